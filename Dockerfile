# The application image: one image for order_api, stock_worker, reconciler, the migrations, the
# CLI and Locust (compose.yaml picks the process with `command`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer, so a code change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev']))" > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY hotdeal_core ./hotdeal_core
COPY order_api ./order_api
COPY stock_worker ./stock_worker
COPY reconciler ./reconciler
COPY hotdeal_cli ./hotdeal_cli
COPY schemas ./schemas
COPY loadtest ./loadtest
COPY alembic.ini ./

# The project itself (and the `hotdeal` CLI); the dev extra carries Locust.
RUN pip install --no-cache-dir '.[dev]' \
 && rm -rf build *.egg-info

# Run as an unprivileged user; /app stays root-owned and read-only for it.
RUN useradd --create-home --uid 10001 --user-group hotdeal
USER hotdeal

EXPOSE 8000 8089
CMD ["python", "-m", "order_api"]
