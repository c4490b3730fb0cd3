// What the client sessions in this directory share: each call is a named step, and a session
// that fails prints which step failed and why, for the test's failure message.

/** The result of `call()`; a failure carries the name of the step it came from. */
export async function step(name, call) {
  try {
    return await call();
  } catch (error) {
    error.step = name;
    throw error;
  }
}

/** Print `result` as the session's one line of JSON. */
export function report(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

/** Print the failed step, `details` of the error and its stack on stderr; exit with 1. */
export function fail(client, error, details) {
  const summary = { step: error.step, name: error.name, message: error.message, ...details };
  process.stderr.write(`${client} session failed: ${JSON.stringify(summary)}\n${error.stack}\n`);
  process.exit(1);
}
