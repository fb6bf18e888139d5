// The demo's OpenID Connect provider: a real, certified implementation (npm `oidc-provider`) rather than
// tokens minted by test code, so that the node's relying party (drimbox/trust/oidc.py) and its token
// verifier are exercised against the protocol as a real identity provider speaks it.
//
// Started by drimbox/devnet/oidc/__init__.py (OidcProvider) with one argument: a JSON settings file
//   { issuer, host, port, modules_dir, signing_key (PEM, EC P-256), audience, resource, acr,
//     access_token_ttl_s, accounts: [{rpps, password, name, given_name, family_name, role, kind, acr}],
//     clients: [{client_id, client_secret, redirect_uris}],
//     previous_keys (PEM EC P-256 private keys still published in the JWKS, not signing: key rotation),
//     access_token_format ('jwt' | 'opaque': opaque tokens are the ones RFC 7662 introspection answers for),
//     mtls: null | { port, cert, key, ca } (an HTTPS listener that asks for client certificates: RFC 8705),
//     tls_clients: [{client_id, subject_dn}] (resource servers authenticating with tls_client_auth) }
// Tokens: ES256 with the demo IdP key (the key `drimbox dev-token` signs with, so both verify alike);
// access tokens are JWTs for the resource `resource` with audience `audience` and the claims the node
// maps (kind, rpps, role, name, acr; client_id). Login: the account's RPPS and its password, then consent.
// Clients may also get a token of their own (client credentials: kind `node`, no user, no acr); tokens can
// be introspected (RFC 7662, by tls_client_auth on the mTLS listener or client_secret_basic) and revoked.
// Interactions are ours (devInteractions accept any password): plain HTML forms, in French.

import { createHash, createPrivateKey, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const modulePackage = join(settings.modules_dir, 'oidc-provider', 'package.json');
const entry = JSON.parse(readFileSync(modulePackage, 'utf8')).main ?? 'lib/index.js';
const { default: Provider, errors } = await import(pathToFileURL(join(settings.modules_dir, 'oidc-provider', entry)).href);

// -- keys --------------------------------------------------------------------------------------------

const jwk = createPrivateKey(readFileSync(settings.signing_key)).export({ format: 'jwk' });
if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw new Error(`${settings.signing_key}: an EC P-256 key is expected`);
// RFC 7638 thumbprint as key id: stable for the same key, so a restarted provider keeps its kid.
const thumbprint = createHash('sha256')
  .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
  .digest('base64url');
const signingKey = { ...jwk, kid: thumbprint, alg: 'ES256', use: 'sig' };
// Keys of a rotation: published after the signing key (oidc-provider signs with the first key that fits
// the algorithm, and needs private keys in its key set), so tokens they signed still verify.
const previousKeys = (settings.previous_keys ?? []).map((path) => {
  const key = createPrivateKey(readFileSync(path)).export({ format: 'jwk' });
  if (key.kty !== 'EC' || key.crv !== 'P-256') throw new Error(`${path}: an EC P-256 private key is expected`);
  const kid = createHash('sha256').update(JSON.stringify({ crv: key.crv, kty: key.kty, x: key.x, y: key.y }))
    .digest('base64url');
  return { ...key, kid, alg: 'ES256', use: 'sig' };
});

// -- accounts ----------------------------------------------------------------------------------------

const digest = (value) => createHash('sha256').update(String(value), 'utf8').digest();
const accounts = new Map(settings.accounts.map((account) => [`rpps:${account.rpps}`, account]));

function checkPassword(login, password) {
  const account = accounts.get(`rpps:${String(login ?? '').trim()}`);
  // Compare digests in constant time, and compare even for an unknown login (no timing oracle).
  const ok = timingSafeEqual(digest(account?.password ?? randomBytes(16).toString('hex')), digest(password ?? ''));
  return ok && account ? account : undefined;
}

async function findAccount(_ctx, id) {
  const account = accounts.get(id);
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        name: account.name,
        given_name: account.given_name,
        family_name: account.family_name,
      };
    },
  };
}

// -- provider ----------------------------------------------------------------------------------------

const resource = settings.resource;
const accessTokenFormat = settings.access_token_format ?? 'jwt';
const mtls = settings.mtls ?? null;
const mtlsUrl = mtls ? `https://${settings.host}:${mtls.port}` : null;

// The client certificate of the current request (mTLS listener only), for RFC 8705 tls_client_auth.
const peerCertificate = (ctx) => (ctx.req.socket.getPeerX509Certificate?.() ?? undefined);
const dn = (subject) => subject.split('\n').filter(Boolean).join(',');

const configuration = {
  findAccount,
  jwks: { keys: [signingKey, ...previousKeys] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  clients: settings.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: client.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    grant_types: ['authorization_code', 'client_credentials'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
  })).concat((settings.tls_clients ?? []).map((client) => ({
    // A resource server (a node) that only introspects tokens, authenticated by its TLS certificate.
    client_id: client.client_id,
    redirect_uris: [],
    grant_types: [],
    response_types: [],
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: client.subject_dn,
  }))),
  discovery: mtlsUrl ? {
    mtls_endpoint_aliases: {
      introspection_endpoint: `${mtlsUrl}/token/introspection`,
      revocation_endpoint: `${mtlsUrl}/token/revocation`,
      token_endpoint: `${mtlsUrl}/token`,
    },
  } : {},
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  // No shared-secret JWT client authentication (HS256): secrets travel only in Basic over TLS, or mTLS.
  clientAuthMethods: mtls ? ['client_secret_basic', 'tls_client_auth'] : ['client_secret_basic'],
  claims: { openid: ['sub'], profile: ['name', 'given_name', 'family_name'] },
  scopes: ['openid', 'profile', 'drimbox'],
  responseTypes: ['code'],
  pkce: { required: () => true },
  acrValues: [settings.acr],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    mTLS: {
      enabled: Boolean(mtls),
      tlsClientAuth: true,
      getCertificate: (ctx) => peerCertificate(ctx)?.toString(),
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => (
        property === 'tls_client_auth_subject_dn' && dn(peerCertificate(ctx)?.subject ?? '') === expected),
    },
    resourceIndicators: {
      enabled: true,
      // Every access token is for the node's API, even when the client names no resource.
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => {
        if (indicator !== resource) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        return {
          scope: 'drimbox',
          audience: settings.audience,
          accessTokenTTL: settings.access_token_ttl_s,
          accessTokenFormat,
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
  // The claims the node's token verifier maps to its Principal (drimbox/trust/tokens.py).
  extraTokenClaims: async (_ctx, token) => {
    if (token.kind === 'ClientCredentials') return { kind: 'node' };  // the client's own token: no user
    const account = token.accountId ? accounts.get(token.accountId) : undefined;
    if (!account) return undefined;
    return {
      kind: account.kind ?? 'practitioner', rpps: account.rpps, role: account.role, name: account.name,
      acr: account.acr ?? settings.acr,
    };
  },
  ttl: {
    AccessToken: settings.access_token_ttl_s,
    ClientCredentials: settings.access_token_ttl_s,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 8 * 3600,
    Grant: 8 * 3600,
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Erreur de connexion', `<p>Le fournisseur d'identité n'a pas pu traiter la demande.</p>
      <p><code>${escape(out.error)}</code> ${escape(out.error_description ?? '')}</p>`);
  },
};

const provider = new Provider(settings.issuer, configuration);
provider.on('server_error', (_ctx, error) => console.error('server_error', error));
// Why a client was refused at the token, introspection or revocation endpoint (the answer only says invalid_client).
for (const event of ['grant.error', 'introspection.error', 'revocation.error']) {
  provider.on(event, (_ctx, error) => console.error(`${event}: ${error.message} ${error.error_detail ?? ''}`));
}

// -- interactions: login (RPPS + password) and consent ------------------------------------------------

function escape(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>${escape(title)}</title></head>
<body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;
}

function loginPage(uid, clientId, hint, error) {
  return page('Connexion — fournisseur d\'identité de démonstration', `
<p>Connexion demandée par <strong>${escape(clientId)}</strong>.</p>
${error ? `<p role="alert" class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
  <label>Identifiant RPPS <input name="login" value="${escape(hint)}" required autofocus></label>
  <label>Mot de passe <input type="password" name="password" required></label>
  <button type="submit">Se connecter</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Annuler</button></form>`);
}

function consentPage(uid, clientId, scopes) {
  return page('Autorisation', `
<p>L'application <strong>${escape(clientId)}</strong> demande à connaître votre identité
(${escape(scopes.join(', '))}) et à agir en votre nom auprès des nœuds DRIMbox.</p>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Autoriser</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Refuser</button></form>`);
}

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'x-frame-options': 'DENY',
    'content-security-policy': "default-src 'none'; form-action 'self' http: https:; frame-ancestors 'none'",
  });
  res.end(html);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return send(res, 200, loginPage(uid, params.client_id, params.login_hint ?? '', ''));
    if (prompt.name === 'consent') {
      const scopes = [...(prompt.details.missingOIDCScope ?? []),
        ...Object.values(prompt.details.missingResourceScopes ?? {}).flat()];
      return send(res, 200, consentPage(uid, params.client_id, scopes));
    }
    return send(res, 501, page('Étape inconnue', `<p>${escape(prompt.name)}</p>`));
  }
  if (req.method !== 'POST') return send(res, 405, page('Méthode non permise', ''));
  const form = await readForm(req);
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (action === 'login') {
    if (prompt.name !== 'login') throw new Error('not at the login step');
    const account = checkPassword(form.get('login'), form.get('password'));
    if (!account) {
      console.log(`login refused for ${JSON.stringify(String(form.get('login') ?? '').slice(0, 32))}`);
      return send(res, 401, loginPage(uid, params.client_id, form.get('login') ?? '',
        'Identifiant RPPS ou mot de passe incorrect.'));
    }
    console.log(`login of rpps:${account.rpps} for ${params.client_id}`);
    return provider.interactionFinished(req, res, {
      login: { accountId: `rpps:${account.rpps}`, acr: account.acr ?? settings.acr, amr: ['pwd'] },
    }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm') {
    if (prompt.name !== 'consent') throw new Error('not at the consent step');
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 404, page('Introuvable', ''));
}

const handle = provider.callback();
const server = createServer((req, res) => {
  const match = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm|abort))?\/?$/.exec(req.url.split('?')[0]);
  if (!match) return handle(req, res);
  interaction(req, res, match[1], match[2]).catch((error) => {
    console.error(`interaction ${match[1]}: ${error.message ?? error}`);
    if (!res.headersSent) {
      send(res, 400, page('Connexion impossible', `<p>Cette étape de connexion n'est plus valable (expirée ou déjà
        utilisée). Recommencez depuis l'application.</p>`));
    } else {
      res.end();
    }
  });
});
server.headersTimeout = 10000;
server.requestTimeout = 30000;
server.listen(settings.port, settings.host, () => {
  console.log(`oidc-provider listening at ${settings.issuer}`);
});
// RFC 8705 endpoints: the same provider behind TLS that asks for (and verifies) client certificates.
const tlsServer = mtls ? createTlsServer({
  cert: readFileSync(mtls.cert), key: readFileSync(mtls.key), ca: readFileSync(mtls.ca),
  requestCert: true, rejectUnauthorized: false,
}, handle) : null;
tlsServer?.listen(mtls.port, settings.host, () => console.log(`mTLS endpoints at ${mtlsUrl}`));
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    tlsServer?.close();
    tlsServer?.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
