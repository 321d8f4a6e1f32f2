-- Every phone of every contact: SuiteCRM keeps them as columns of contacts (phone_work, the primary one;
-- phone_mobile; add phone_home, phone_other, phone_fax where your CRM fills them): one row per phone, for the
-- relation phones (config/entities/02_contacts.yaml), with the contact's country (a phone without +prefix is
-- read in it), a deleted contact's phones dead with it.
SELECT id AS contact_id, phone_work AS phone, 1 AS is_primary, primary_address_country AS country, deleted
FROM contacts WHERE phone_work IS NOT NULL AND phone_work <> ''
UNION ALL
SELECT id, phone_mobile, 0, primary_address_country, deleted
FROM contacts WHERE phone_mobile IS NOT NULL AND phone_mobile <> ''
