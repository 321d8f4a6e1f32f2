"""crm-cutover business logic: plain Python, testable without Airflow.

stages (extract, transform, load, and the stage timing), cleanse, dedupe, delta and rollback hold
the stages; legacy reads the legacy source (clock, extract query, row hashes), reconcile checks by id
against the target, quality runs the gates, report writes the import report, errors classifies
failures, config the typed configuration; demo_legacy builds the demo legacy CRM.
"""
