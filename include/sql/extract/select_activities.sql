-- Legacy activities: SuiteCRM's calls, meetings, notes and tasks as one entity (their ids are UUIDs,
-- unique across the four tables), each on a parent of any module (parent_type / parent_id); notes and
-- tasks may also name a contact.
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT a.*
FROM (
    SELECT c.id, 'call' AS activity_type, c.name, c.status, c.date_start, c.parent_type, c.parent_id,
           CAST(NULL AS char(36)) AS contact_id, c.description, c.assigned_user_id, c.date_entered,
           c.date_modified, c.deleted
    FROM calls c
    UNION ALL
    SELECT m.id, 'meeting', m.name, m.status, m.date_start, m.parent_type, m.parent_id, NULL, m.description,
           m.assigned_user_id, m.date_entered, m.date_modified, m.deleted
    FROM meetings m
    UNION ALL
    SELECT n.id, 'note', n.name, NULL, NULL, n.parent_type, n.parent_id, n.contact_id, n.description,
           n.assigned_user_id, n.date_entered, n.date_modified, n.deleted
    FROM notes n
    UNION ALL
    SELECT t.id, 'task', t.name, t.status, t.date_start, t.parent_type, t.parent_id, t.contact_id, t.description,
           t.assigned_user_id, t.date_entered, t.date_modified, t.deleted
    FROM tasks t
) a
WHERE ($source_filter) AND ($delta_filter)
ORDER BY a.id
