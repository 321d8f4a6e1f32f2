"""What Airflow calls: the task callables (tasks), the DAG wiring of a lot, the delta, rollback and the
rehearsal (wiring), the house defaults every DAG gets (defaults). The only modules that import Airflow.

May import: every layer.
"""
