-- Legacy leads (prospects), with their status, conversion flag and, once converted, the contact they became.
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT l.id, l.first_name, l.last_name, l.account_name, l.status, l.lead_source, l.phone_work,
       l.primary_address_country, l.converted, l.contact_id, l.account_id, l.date_entered, l.date_modified,
       l.deleted, l.assigned_user_id
FROM leads l
WHERE ($source_filter) AND ($delta_filter)
ORDER BY l.id
