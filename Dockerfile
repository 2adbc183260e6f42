# Paydesk image: one image for web (gunicorn), Celery worker and Celery beat.
#   docker build -t paydesk .
#   docker run -p 8000:8000 paydesk            # embedded default (SQLite in the container, DEBUG on)
# docker-compose.yml runs it with PostgreSQL and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not reinstall them. The pinned packages install
# from wheels (psycopg[binary] included, with its own libpq): no compiler or libpq-dev needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

# An unprivileged user that owns /app (the embedded SQLite default writes db.sqlite3 here).
RUN groupadd --system paydesk \
    && useradd --system --gid paydesk --home-dir /app --no-create-home paydesk \
    && chown paydesk:paydesk /app

COPY --chown=paydesk:paydesk . .

USER paydesk

# FILE_STORAGE_DIR's default, owned by the app user (a volume mounted on it keeps that).
RUN mkdir -p var/files

# Static files (admin, browsable API) into /app/staticfiles. Settings need secrets when
# DEBUG is off; these dummies exist for this one build step only and are not in the
# image's environment. WhiteNoise serves them from the app.
RUN SECRET_KEY=collectstatic-build-only JWT_SECRET=collectstatic-build-only DEBUG=0 \
    python manage.py collectstatic --noinput

EXPOSE 8000

# Stateless web process; scale with more containers. Everything gunicorn runs with is in
# gunicorn.conf.py: bind 0.0.0.0:8000, workers and threads measured for a 2-core box
# (WEB_CONCURRENCY / GUNICORN_THREADS to change them), timeout, access log, request-size
# limits and JSON (not HTML) for requests gunicorn refuses.
CMD ["gunicorn", "config.wsgi:application", "--config", "gunicorn.conf.py"]
