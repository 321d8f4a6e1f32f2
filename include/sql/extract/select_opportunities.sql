-- Legacy opportunities with their account and first linked contact (opportunities_contacts).
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT o.id, o.name, o.amount, o.currency_id, o.sales_stage, o.probability, o.date_closed, o.lead_source,
       o.account_id,
       (SELECT min(oc.contact_id) FROM opportunities_contacts oc
         WHERE oc.opportunity_id = o.id AND oc.deleted = 0) AS contact_id,
       o.date_entered, o.date_modified, o.deleted, o.assigned_user_id
FROM opportunities o
WHERE ($source_filter) AND ($delta_filter)
ORDER BY o.id
