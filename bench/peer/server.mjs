// The benchmark peer: a minimal oidc-provider (npm, OpenID-certified) configured with one
// confidential client that may use the client_credentials grant, and one resource server whose
// access tokens are ES256-signed JWTs. Serves the same Koa app over plain HTTP and over HTTPS.
//
// Configuration (environment):
//   PEER_HTTP_PORT      plain HTTP port on 127.0.0.1 (default 3000; 0 disables)
//   PEER_HTTPS_PORT     HTTPS port on 127.0.0.1 (default 3443; 0 disables)
//   PEER_TLS_CERT       PEM certificate file for HTTPS (required when HTTPS is enabled)
//   PEER_TLS_KEY        PEM private key file for HTTPS (required when HTTPS is enabled)
//   PEER_CLIENT_ID      client id (default "bench")
//   PEER_CLIENT_SECRET  client secret (default "bench-secret-0123456789abcdef")
//   PEER_RESOURCE       resource indicator / audience of the access tokens
//                       (default "https://api.bench.test/")
//   PEER_SCOPE          scope the resource server accepts (default "api.read")
//
// Nothing is logged per request. One line "peer ready ..." is printed on stdout once both
// listeners are up; the process exits on SIGTERM/SIGINT.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider from 'oidc-provider';

const env = (name, dflt) => process.env[name] ?? dflt;
const httpPort = Number(env('PEER_HTTP_PORT', '3000'));
const httpsPort = Number(env('PEER_HTTPS_PORT', '3443'));
const clientId = env('PEER_CLIENT_ID', 'bench');
const clientSecret = env('PEER_CLIENT_SECRET', 'bench-secret-0123456789abcdef');
const resource = env('PEER_RESOURCE', 'https://api.bench.test/');
const resourceScope = env('PEER_SCOPE', 'api.read');
const host = '127.0.0.1';

// One ES256 signing key, generated at start (as usherd generates its own on first start).
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const issuer = httpsPort ? `https://${host}:${httpsPort}` : `http://${host}:${httpPort}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      // oidc-provider accepts both client_secret_post and client_secret_basic for a client
      // registered with either of them.
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: { keys: [signingJwk] },
  clientDefaults: { id_token_signed_response_alg: 'ES256' },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: 60 * 60 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // Requests without a `resource` parameter get this audience.
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== resource) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: resourceScope,
          audience: resource,
          accessTokenTTL: 60 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        };
      },
    },
  },
});

const app = provider.callback();
const servers = [];

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server.address().port));
  });
}

const ready = [];
if (httpPort) {
  const server = http.createServer(app);
  server.keepAliveTimeout = 65_000;
  servers.push(server);
  ready.push(listen(server, httpPort).then((p) => `http://${host}:${p}`));
}
if (httpsPort) {
  const cert = readFileSync(env('PEER_TLS_CERT'));
  const key = readFileSync(env('PEER_TLS_KEY'));
  const server = https.createServer({ cert, key }, app);
  server.keepAliveTimeout = 65_000;
  servers.push(server);
  ready.push(listen(server, httpsPort).then((p) => `https://${host}:${p}`));
}

const urls = await Promise.all(ready);
console.log(`peer ready pid=${process.pid} issuer=${issuer} token=/token listening=${urls.join(',')}`);

const stop = () => {
  for (const server of servers) server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
