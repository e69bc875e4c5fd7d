# One image for the worker, Flower and the simulator (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY config ./config
COPY tasks ./tasks
COPY worker ./worker
RUN useradd --create-home --uid 10001 comfy
USER comfy
ENV PYTHONUNBUFFERED=1
CMD ["celery", "-A", "tasks.app", "worker", "--loglevel=info"]
