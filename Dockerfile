# The drimbox image: the node (`drimbox serve`) and the registry (`drimbox registry serve`), one package.
# Built by `docker compose build` (docker-compose.yml); tests/deploy/test_compose.py checks that it installs
# this project and that its entrypoint is the project's console script.

# -- the OHIF viewer's prebuilt dist/ (npm @ohif/app), checked against its published sha512 --------------
FROM node:20-bookworm-slim AS ohif
ARG OHIF_VERSION=3.13.2
ARG OHIF_SHA512=5997719a9986eeba85816f5924b71b82bdd70ad2e2d4a0cd3e831a798e4f3deea3e06e1f8c48e393271933a0ba664d85f3b04ac457e9abe8dde715d907d13c10
WORKDIR /ohif
RUN npm pack --silent "@ohif/app@${OHIF_VERSION}" \
 && echo "${OHIF_SHA512}  ohif-app-${OHIF_VERSION}.tgz" | sha512sum -c - \
 && tar -xzf "ohif-app-${OHIF_VERSION}.tgz" package/dist

# -- wheels: lxml and xmlsec built against the same system libxml2/libxmlsec1 (signatures need both to agree)
FROM python:3.11-slim-bookworm AS wheels
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libxml2-dev libxslt1-dev libxmlsec1-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY drimbox ./drimbox
COPY dicomweb_gateway ./dicomweb_gateway
COPY registry ./registry
RUN pip wheel --no-cache-dir --no-binary lxml,xmlsec --wheel-dir /wheels .

# -- runtime -------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libxml2 libxslt1.1 libxmlsec1 libxmlsec1-openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/drimbox --create-home drimbox \
 && install -d -o drimbox -g drimbox /var/cache/drimbox /var/lib/drimbox-registry
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels drimbox && rm -rf /wheels
COPY --from=ohif /ohif/package/dist /opt/ohif/dist
USER drimbox
WORKDIR /var/lib/drimbox
ENV PYTHONUNBUFFERED=1
EXPOSE 8080 8443 2575 11112 8090
ENTRYPOINT ["drimbox"]
CMD ["--help"]
