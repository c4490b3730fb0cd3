// A scripted session of masto (the npm Mastodon client library) against a live site, run by
// tests/test_mastodon_clients.py:  node masto_session.mjs BASE_URL EMAIL PASSWORD TEXT...
// It registers an app, signs in with the password grant, posts each TEXT as a status, then
// reads back what a client app shows first. Everything goes through masto's own calls; what
// they returned is printed as one JSON object for the test to check. A failing call prints
// its error (status, message, body) on stderr and exits with 1.
import { createOAuthAPIClient, createRestAPIClient } from "masto";

import { fail, report, step } from "./steps.mjs";

const OOB = "urn:ietf:wg:oauth:2.0:oob";
const SCOPES = "read write follow";
// A timeline that keeps saying "there is more" must not loop forever.
const MAX_PAGES = 50;

async function signIn(url, email, password) {
  const anonymous = createRestAPIClient({ url });
  const app = await step("v1.apps.create", () =>
    anonymous.v1.apps.create({ clientName: "masto test session", redirectUris: OOB, scopes: SCOPES }),
  );
  const oauth = createOAuthAPIClient({ url });
  const token = await step("oauth.token.create (password)", () =>
    oauth.token.create({
      grantType: "password",
      clientId: app.clientId,
      clientSecret: app.clientSecret,
      redirectUri: OOB,
      username: email,
      password,
      scope: SCOPES,
    }),
  );
  return { app, token, client: createRestAPIClient({ url, accessToken: token.accessToken }) };
}

async function homePages(client, limit) {
  const pages = [];
  for await (const page of client.v1.timelines.home.list({ limit })) {
    pages.push(page.map((status) => ({ id: status.id, content: status.content })));
    if (pages.length >= MAX_PAGES) break;
  }
  return pages;
}

async function main() {
  const [url, email, password, ...texts] = process.argv.slice(2);
  const { app, token, client } = await signIn(url, email, password);
  const account = await step("v1.accounts.verifyCredentials", () =>
    client.v1.accounts.verifyCredentials(),
  );
  const created = [];
  for (const text of texts) {
    created.push(await step("v1.statuses.create", () => client.v1.statuses.create({ status: text })));
  }
  const instance = await step("v2.instance.fetch", () => client.v2.instance.fetch());
  const pages = await step("v1.timelines.home.list", () => homePages(client, 2));
  const notifications = await step("v1.notifications.list", () =>
    client.v1.notifications.list({ limit: 30 }),
  );
  const result = { app, scope: token.scope, account, created, instance, pages, notifications };
  report(result);
}

main().catch((error) =>
  fail("masto", error, {
    statusCode: error.statusCode,
    description: error.description,
    details: error.details,
    cause: error.cause instanceof Error ? error.cause.message : undefined,
  }),
);
