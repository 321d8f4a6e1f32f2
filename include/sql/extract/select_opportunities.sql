-- Legacy opportunities. Their company (accounts_opportunities) and contact (opportunities_contacts) come
-- from SuiteCRM's link tables (config/entities/03_opportunities.yaml: through), added by the migration.
-- The delta filter is 1=1 for a lot run; for the delta sync, modified after the watermark minus the overlap.
SELECT o.id, o.name, o.amount, o.currency_id, o.sales_stage, o.probability, o.date_closed, o.lead_source,
       o.date_entered, o.date_modified, o.deleted, o.assigned_user_id
FROM opportunities o
WHERE ($source_filter) AND ($delta_filter)
ORDER BY o.id
