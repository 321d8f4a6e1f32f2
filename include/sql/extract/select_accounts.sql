-- Legacy accounts, soft-deleted ones included: cleanse excludes them with the rule named.
SELECT a.id, a.name, a.account_type, a.industry,
       a.billing_address_street, a.billing_address_city, a.billing_address_postalcode,
       a.billing_address_country, a.phone_office, a.website,
       a.date_entered, a.date_modified, a.deleted
FROM accounts a
WHERE ($source_filter)
ORDER BY a.id
