-- Active target rows ($target) whose legacy id the legacy CRM no longer has (the freeze).
SELECT t.legacy_id FROM $target t
WHERE t.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM pg_temp.legacy_snapshot s WHERE s.legacy_id = t.legacy_id)
