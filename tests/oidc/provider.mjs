// A real OpenID Connect provider (panva/oidc-provider, OpenID certified) for Vigil's single sign-on tests.
//
// Usage: node provider.mjs <config.json>, where the config names the port, the clients and two files
// the test edits while the provider runs:
//   accounts.json  {"alice": {"email": ..., "groups": [...]}}: the provider's user directory, read at
//                  every look-up, so a test can change a user's groups "at the IdP" between sign-ins.
//   fault.json     when present, the token endpoint's ID token is re-signed with these claim changes
//                  ({"aud": ..., "exp_offset": -3600, "foreign_key": true}): a misbehaving or hostile
//                  provider, to prove that Vigil checks what it is given. Absent in normal runs.
// Sign-in uses the provider's own development login form (any password); consent is pre-granted
// to the registered clients as an organisation's IdP does for first-party apps.
import { readFileSync, existsSync } from 'node:fs';

import { exportJWK, generateKeyPair, SignJWT, decodeJwt } from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const readJson = (path, fallback) => (existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : fallback);

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingKey = { ...(await exportJWK(privateKey)), kid: 'test-signing-key', alg: 'RS256', use: 'sig' };
// A key the provider does not publish: tokens signed with it must be refused.
const { privateKey: foreignKey } = await generateKeyPair('RS256');

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [signingKey] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'], groups: ['groups'],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['vigil-test-provider-cookie-key'] },
  async findAccount(ctx, id) {
    const account = readJson(config.accounts_file, {})[id] ?? {};
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, ...account };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email groups');
    await grant.save();
    ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId, grant.jti);
    return grant;
  },
});

provider.use(async (ctx, next) => {
  await next();
  const fault = readJson(config.fault_file, null);
  if (!fault || ctx.path !== '/token' || ctx.status !== 200 || !ctx.body?.id_token) {
    return;
  }
  const claims = decodeJwt(ctx.body.id_token);
  if (fault.aud !== undefined) claims.aud = fault.aud;
  if (fault.exp_offset !== undefined) {
    const now = Math.floor(Date.now() / 1000);
    claims.iat = now + fault.exp_offset - 300;
    claims.exp = now + fault.exp_offset;
  }
  const key = fault.foreign_key ? foreignKey : privateKey;
  ctx.body = {
    ...ctx.body,
    id_token: await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: signingKey.kid }).sign(key),
  };
});

provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${config.issuer}\n`);
});
