// A scripted session of megalodon (the npm Fediverse client library) against a live site, in
// the two halves of the authorization-code flow; tests/test_mastodon_clients.py approves the
// app in between, as the user would in a browser:
//   node megalodon_session.mjs register BASE_URL REDIRECT_URI
//     registers an app; prints {clientId, clientSecret, authorizeUrl}
//   node megalodon_session.mjs session BASE_URL CLIENT_ID CLIENT_SECRET CODE REDIRECT_URI TEXT
//     exchanges the code for a token, then verifies the credentials, posts TEXT and reads
//     the home timeline; prints what each call returned.
// Each prints one JSON object on stdout; a failing call prints its error (the request, the
// status and the body) on stderr and exits with 1.
import megalodon from "megalodon";

import { fail, report, step } from "./steps.mjs";

const { default: generator, detector } = megalodon;
const SCOPES = ["read", "write", "follow"];

async function register(url, redirectUri) {
  const client = generator("mastodon", url);
  const app = await step("registerApp", () =>
    client.registerApp("megalodon test session", { scopes: SCOPES, redirect_uris: redirectUri }),
  );
  return { clientId: app.client_id, clientSecret: app.client_secret, authorizeUrl: app.url };
}

/** What megalodon's detector makes of the site (from NodeInfo), or why it could not tell. */
async function detect(url) {
  try {
    return { software: await detector(url) };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
}

async function session(url, clientId, clientSecret, code, redirectUri, text) {
  const anonymous = generator("mastodon", url);
  const token = await step("fetchAccessToken", () =>
    anonymous.fetchAccessToken(clientId, clientSecret, code, redirectUri),
  );
  const client = generator("mastodon", url, token.access_token);
  const account = await step("verifyAccountCredentials", () => client.verifyAccountCredentials());
  const posted = await step("postStatus", () => client.postStatus(text));
  const home = await step("getHomeTimeline", () => client.getHomeTimeline({ limit: 40 }));
  return {
    scope: token.scope,
    account: account.data,
    posted: posted.data,
    home: home.data,
    detected: await detect(url),
  };
}

async function main() {
  const [mode, ...args] = process.argv.slice(2);
  const result = mode === "register" ? await register(...args) : await session(...args);
  report(result);
}

main().catch((error) =>
  fail("megalodon", error, {
    request: error.config && `${error.config.method} ${error.config.url}`,
    status: error.response && error.response.status,
    body: error.response && error.response.data,
  }),
);
