# The application images, installed from the lock files (requirements/*.lock, refreshed by
# `make lock`), so a build installs the same versions today and next month:
#
#   runtime (the default)  order_api, stock_worker, reconciler, the migrations, the CLI; no
#                          development tools (compose.yaml picks the process with `command`)
#   loadtest               runtime + Locust and loadtest/ (compose's `loadtest` profile)
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY requirements/runtime.lock requirements/
RUN pip install --no-cache-dir -r requirements/runtime.lock

COPY pyproject.toml alembic.ini ./
COPY hotdeal_core ./hotdeal_core
COPY order_api ./order_api
COPY stock_worker ./stock_worker
COPY reconciler ./reconciler
COPY hotdeal_cli ./hotdeal_cli
COPY schemas ./schemas

# The project itself (and the `hotdeal` CLI); its dependencies are the lock's, already here.
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build *.egg-info

# An unprivileged user; /app stays root-owned and read-only for it.
RUN useradd --create-home --uid 10001 --user-group hotdeal


FROM base AS loadtest
COPY requirements/loadtest.lock requirements/
RUN pip install --no-cache-dir -r requirements/loadtest.lock
COPY loadtest ./loadtest
USER hotdeal
EXPOSE 8089
CMD ["locust", "-f", "loadtest/locustfile.py"]


FROM base AS runtime
USER hotdeal
# 8000: the order API (and its /metrics); 9100: a consumer's METRICS_PORT.
EXPOSE 8000 9100
CMD ["python", "-m", "order_api"]
