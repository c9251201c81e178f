# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml ./
RUN pip install --no-cache-dir . && useradd --system --home /app blink

COPY . .
# collectstatic needs settings to load; these throwaway values exist only for this step.
RUN SECRET_KEY=collectstatic-only ALLOWED_HOSTS=build \
    BLINK_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    BLINK_VAR_DIR=/app/var python manage.py collectstatic --noinput \
    && chown -R blink /app/var

USER blink
EXPOSE 8000
CMD ["gunicorn", "blink.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", \
     "--logger-class", "blink.gunicorn_logging.AccessLog"]
