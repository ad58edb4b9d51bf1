# Image for docker-compose.yml: Debian's bcc and Python, the project, the
# built front end.
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-bpfcc linux-headers-amd64 nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN python3 -m venv --system-site-packages /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir '.[web]' \
    && bash scripts/frontend.sh
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
EXPOSE 8000
