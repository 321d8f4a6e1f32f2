-- Every e-mail address of every contact (SuiteCRM keeps them in email_addresses, linked to their record by
-- email_addr_bean_rel, one flagged primary): config/entities/02_contacts.yaml, relations.emails.
SELECT r.bean_id AS contact_id, lower(trim(e.email_address)) AS email, r.primary_address,
       CASE WHEN r.deleted <> 0 OR e.deleted <> 0 THEN 1 ELSE 0 END AS deleted
FROM email_addr_bean_rel r
JOIN email_addresses e ON e.id = r.email_address_id
WHERE r.bean_module = 'Contacts' AND e.email_address IS NOT NULL
