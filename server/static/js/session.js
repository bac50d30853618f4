// Who the dashboard acts as (GET /whoami) and what that token may do: pages hide the controls it may not use.

import {api} from "./api.js";

export const session = {me: {name: "?", role: "read", may_run: false, may_admin: false}};

/** Ask the server who the current token is (none: the server's anonymous or loopback principal). */
export async function refreshSession() {
  try {
    session.me = await api("/whoami");
  } catch {
    session.me = {name: "?", role: "read", may_run: false, may_admin: false};
  }
  return session.me;
}

/** Whether the token may stop or resume campaign `c`: an admin any, a run token its own. */
export function mayAct(c) {
  const me = session.me;
  return me.may_admin || (me.may_run && c.created_by === me.name);
}
