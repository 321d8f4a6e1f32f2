# The Airflow image of docker-compose.yml: the official image plus this project's pinned packages.
FROM apache/airflow:3.3.2-python3.11
COPY requirements.txt constraints.txt /tmp/
RUN pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/constraints.txt
ENV SODA_CORE_TELEMETRY_ENABLED=false
