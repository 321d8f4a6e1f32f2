-- Legacy accounts, soft-deleted ones included: cleanse excludes them with the rule named.
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT a.id, a.name, a.account_type, a.industry,
       a.billing_address_street, a.billing_address_city, a.billing_address_postalcode,
       a.billing_address_country, a.phone_office, a.website,
       a.date_entered, a.date_modified, a.deleted, a.assigned_user_id, a.parent_id
FROM accounts a
WHERE ($source_filter) AND ($delta_filter)
ORDER BY a.id
