// Loopback OpenID Connect provider that stands in for the mos.ru account in tests.
//
// Configuration (environment):
//   OIDC_PORT      port on 127.0.0.1 (argv[2] wins; 0 or unset = any free port, reported on READY)
//   OIDC_CLIENT    JSON client metadata: {"client_id", "client_secret", "redirect_uris": [...], ...};
//                  other oidc-provider client metadata passes through (e.g. "application_type":
//                  "native" makes http://127.0.0.1 redirect URIs match on any port, RFC 8252 7.3)
//   OIDC_ACCOUNTS  JSON list: [{"sub": "mos-1001", "phone_number": "+7...", "name": "..."}, ...]
// Prints "READY <issuer>" on stdout once it accepts connections; exits when stdin closes, so a
// test runner that dies does not leave the process behind.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const CLAIMS = {
  openid: ['sub'],
  phone: ['phone_number', 'phone_number_verified'],
  profile: ['name'],
};

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function readJsonEnv(name) {
  const raw = process.env[name];
  if (!raw) fail(`${name} is required`);
  try {
    return JSON.parse(raw);
  } catch (err) {
    return fail(`${name} is not valid JSON: ${err.message}`);
  }
}

function loadAccounts() {
  const list = readJsonEnv('OIDC_ACCOUNTS');
  if (!Array.isArray(list)) fail('OIDC_ACCOUNTS must be a JSON list');
  const accounts = new Map();
  for (const entry of list) {
    if (typeof entry?.sub !== 'string' || !entry.sub) fail('every account needs a string "sub"');
    const claims = { ...entry };
    // A phone number on a city account is one the owner has confirmed by SMS.
    if (claims.phone_number !== undefined && claims.phone_number_verified === undefined) {
      claims.phone_number_verified = true;
    }
    accounts.set(entry.sub, claims);
  }
  return accounts;
}

function loadClient() {
  const client = readJsonEnv('OIDC_CLIENT');
  for (const key of ['client_id', 'client_secret']) {
    if (typeof client[key] !== 'string' || !client[key]) fail(`OIDC_CLIENT.${key} is required`);
  }
  if (!Array.isArray(client.redirect_uris) || client.redirect_uris.length === 0) {
    fail('OIDC_CLIENT.redirect_uris must be a non-empty list');
  }
  return {
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  };
}

function signingKeys() {
  // Fresh keys per process: the quick-start keys bundled with the package are public.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: `k-${randomBytes(4).toString('hex')}`, use: 'sig', alg: 'RS256' }] };
}

const escapeHtml = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// Plain pages with no external stylesheet or font: the package's built-in ones import a web
// font, which a browser here would try to fetch from the network.
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font-family:sans-serif;max-width:26em;margin:2em auto;padding:0 1em}input,button{box-sizing:border-box;font-size:1.1em;width:100%;margin:.3em 0;padding:.4em}.error{color:#b00}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function loginPage(uid, error, loginHint) {
  const message = error ? `<p class="error" id="error">${escapeHtml(error)}</p>` : '';
  return page('mos.ru: вход', `${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" id="login-form">
  <label for="login">Логин (sub)</label>
  <input id="login" name="login" type="text" required autofocus value="${escapeHtml(loginHint ?? '')}">
  <button type="submit" id="login-submit">Войти</button>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort" id="abort">Отмена</a></p>`);
}

function consentPage(uid, clientId, scopes) {
  const items = scopes.map((scope) => `<li>${escapeHtml(scope)}</li>`).join('');
  return page('mos.ru: доступ к данным', `<p>Приложение <b>${escapeHtml(clientId)}</b> запрашивает:</p><ul>${items}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm" id="consent-form">
  <button type="submit" id="consent-submit">Разрешить</button>
</form>
<p><a href="/interaction/${escapeHtml(uid)}/abort" id="abort">Отмена</a></p>`);
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function handleInteraction(provider, accounts, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Ошибка', '<p>Сессия входа не найдена.</p>'));
    return;
  }
  const { prompt, params, session } = details;

  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (req.method === 'GET' && action === undefined) {
    if (prompt.name === 'login') {
      send(res, 200, loginPage(uid, undefined, params.login_hint));
    } else {
      send(res, 200, consentPage(uid, params.client_id, String(params.scope).split(' ')));
    }
    return;
  }

  if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
    const login = (await readForm(req)).get('login')?.trim() ?? '';
    if (!accounts.has(login)) {
      send(res, 400, loginPage(uid, `Нет учётной записи «${login}»`, login));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }

  if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
    await readForm(req);
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }

  send(res, 400, page('Ошибка', `<p>Неожиданный шаг входа: ${escapeHtml(prompt.name)}.</p>`));
}

function buildProvider(issuer, client, accounts) {
  return new Provider(issuer, {
    clients: [client],
    jwks: signingKeys(),
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'phone', 'profile'],
    claims: CLAIMS,
    pkce: { required: () => true },
    responseTypes: ['code'],
    async findAccount(_ctx, sub) {
      const claims = accounts.get(sub);
      if (!claims) return undefined;
      return { accountId: sub, async claims() { return { ...claims }; } };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      // Nothing here may reach the network, and the stand-in offers only what mos.ru does.
      dPoP: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.body = page('mos.ru: выход', `${form}<button form="op.logoutForm" type="submit" name="logout" value="yes" id="logout-submit">Выйти</button>`);
        },
        async postLogoutSuccessSource(ctx) {
          ctx.body = page('mos.ru: выход', '<p>Вы вышли.</p>');
        },
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      const rows = Object.entries(out).map(([k, v]) => `<p><b>${escapeHtml(k)}</b>: ${escapeHtml(v)}</p>`).join('');
      ctx.body = page('Ошибка входа', rows);
    },
    fetch() {
      throw new Error('outgoing requests are disabled in the test provider');
    },
  });
}

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/;

function main() {
  const client = loadClient();
  const accounts = loadAccounts();
  const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);

  let provider;
  let providerCallback;
  const server = createServer((req, res) => {
    const match = INTERACTION_PATH.exec(new URL(req.url, 'http://127.0.0.1').pathname);
    if (!match) {
      providerCallback(req, res);
      return;
    }
    handleInteraction(provider, accounts, req, res, match[1], match[2]).catch((err) => {
      // Expired or missing interaction cookies surface here (SessionNotFound and friends).
      if (!res.headersSent) send(res, err.statusCode ?? 500, page('Ошибка', `<p>${escapeHtml(err.message)}</p>`));
      else res.end();
    });
  });

  // Listening first lets port 0 pick a free port without a race; the issuer needs the port.
  server.listen(port, '127.0.0.1', () => {
    const issuer = `http://127.0.0.1:${server.address().port}`;
    provider = buildProvider(issuer, client, accounts);
    provider.on('server_error', (_ctx, err) => process.stderr.write(`server_error: ${err.stack}\n`));
    providerCallback = provider.callback();
    process.stdout.write(`READY ${issuer}\n`);
  });

  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (fstatSync(0).isFIFO()) {
    process.stdin.on('end', stop);
    process.stdin.resume();
  }
}

main();
