-- Legacy users: the owners every record's assigned_user_id points to.
SELECT u.id, u.user_name, u.first_name, u.last_name, u.status, u.date_entered, u.date_modified, u.deleted
FROM users u
WHERE ($source_filter) AND ($delta_filter)
ORDER BY u.id
