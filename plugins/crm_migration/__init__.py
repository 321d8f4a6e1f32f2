"""crm-cutover business logic: plain Python, testable without Airflow.

One module per stage (extract, cleanse, dedupe, transform, load) plus config,
quality (Soda gates), report and the demo legacy CRM generator.
"""
