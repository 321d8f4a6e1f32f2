"""The demo: a legacy CRM in SuiteCRM 7's layout with the dirt real ones have (demo_legacy), a sample
Salesforce-style export of it (demo_export), finding or starting a PostgreSQL for `make demo` and the tests
(local_pg). Not part of the migration: it may import crm_migration, never the other way round.
"""
