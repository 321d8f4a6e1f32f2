-- Legacy contacts with their primary e-mail from the separate e-mail tables (every e-mail: the relation
-- emails). The company comes from the link table accounts_contacts (config/entities/02_contacts.yaml: through), added by the migration.
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT c.id, c.salutation, c.first_name, c.last_name, c.title,
       c.phone_work, c.phone_mobile, c.primary_address_city, c.primary_address_postalcode,
       c.primary_address_country, c.birthdate,
       c.lead_source, c.date_entered, c.date_modified, c.deleted, c.assigned_user_id, c.reports_to_id,
       e.email_address AS email
FROM contacts c
LEFT JOIN email_addr_bean_rel r
       ON r.bean_id = c.id AND r.bean_module = 'Contacts' AND r.primary_address = 1 AND r.deleted = 0
      -- two rows flagged primary (it happens): the first, so a contact stays one row
      AND r.id = (SELECT min(r2.id) FROM email_addr_bean_rel r2 WHERE r2.bean_id = c.id
                  AND r2.bean_module = 'Contacts' AND r2.primary_address = 1 AND r2.deleted = 0)
LEFT JOIN email_addresses e
       ON e.id = r.email_address_id AND e.deleted = 0
WHERE ($source_filter) AND ($delta_filter)
ORDER BY c.id
