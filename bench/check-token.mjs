// Checks that a token response carries an ES256-signed JWT access token whose signature verifies
// against the issuer's JWKS. Used by bench/run.sh before any load is sent, so that both servers
// are measured doing the same work (issuing ES256 JWTs).
//
//   node bench/check-token.mjs TOKEN_RESPONSE.json JWKS.json
//
// Prints the decoded JOSE header and a few claims; exits non-zero when the check fails.
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [tokenPath, jwksPath] = process.argv.slice(2);
const fail = (msg) => {
  console.error(`check-token: ${msg}`);
  process.exit(1);
};

let response;
let jwks;
try {
  response = JSON.parse(readFileSync(tokenPath, 'utf8'));
  jwks = JSON.parse(readFileSync(jwksPath, 'utf8'));
} catch (e) {
  fail(`cannot parse input: ${e.message}`);
}
const token = response.access_token;
if (typeof token !== 'string') fail(`no access_token in response: ${JSON.stringify(response).slice(0, 300)}`);

const parts = token.split('.');
if (parts.length !== 3) fail('access token is not a compact JWS (opaque token?)');
const decode = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
const header = decode(parts[0]);
const claims = decode(parts[1]);

if (header.alg !== 'ES256') fail(`alg is ${header.alg}, expected ES256`);
const jwk = (jwks.keys || []).find((k) => k.kid === header.kid);
if (!jwk) fail(`kid ${header.kid} not in JWKS`);
const key = createPublicKey({ key: jwk, format: 'jwk' });
const ok = verify(
  'sha256',
  Buffer.from(`${parts[0]}.${parts[1]}`),
  { key, dsaEncoding: 'ieee-p1363' },
  Buffer.from(parts[2], 'base64url'),
);
if (!ok) fail('signature does not verify against the JWKS');

console.log(`header=${JSON.stringify(header)} iss=${claims.iss} aud=${JSON.stringify(claims.aud)} length=${token.length} signature=valid`);
