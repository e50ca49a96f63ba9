// End-to-end test of the chat page in headless Chromium, driven by playwright-core.
//
// Run by tests/it/browser.rs, which starts the server and passes:
//   CHAT_URL        http://127.0.0.1:PORT/
//   CHAT_PASSWORD   the server password the server was started with
//   ARTIFACTS       directory for screenshots (page-a.png, page-b.png, ...)
// Optional: CHROMIUM (default /usr/bin/chromium).
//
// Exit code 0 on success; on failure prints what failed, both pages' protocol logs, and saves
// failure screenshots.

import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

const URL = need("CHAT_URL");
const PASSWORD = need("CHAT_PASSWORD");
const ARTIFACTS = need("ARTIFACTS");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const STEP_MS = 10_000; // every single wait
const TOTAL_MS = 150_000; // the whole run

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`e2e: environment variable ${name} is required (run through \`cargo test --test it browser\`)`);
    process.exit(2);
  }
  return v;
}

const watchdog = setTimeout(() => {
  console.error(`e2e: gave up after ${TOTAL_MS / 1000}s`);
  process.exit(1);
}, TOTAL_MS);

let step = "start";
const t0 = Date.now();
function log(msg) {
  step = msg;
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
}

mkdirSync(ARTIFACTS, { recursive: true });
for (const name of ["a", "b"]) rmSync(join(ARTIFACTS, `failure-page-${name}.png`), { force: true }); // from an earlier run
const pageErrors = [];
const profiles = [];
const contexts = [];
let A, B;

/**
 * One Chromium per user, each with a fresh profile: two tabs of one browser would leave one of
 * them in the background, where animation frames are throttled and every click waits seconds.
 */
async function openBrowser(name) {
  const profile = mkdtempSync(join(tmpdir(), `chat-e2e-${name}-`));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1100, height: 720 },
    timeout: 30_000,
  });
  contexts.push(context);
  context.setDefaultTimeout(STEP_MS);
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`${name} console: ${m.text()}`);
  });
  return page;
}

try {
  log(`launch ${CHROMIUM} twice`);
  [A, B] = await Promise.all([openBrowser("A"), openBrowser("B")]);

  log("open both pages");
  for (const page of [A, B]) {
    const res = await page.goto(URL, { timeout: STEP_MS });
    assert.equal(res.status(), 200);
    assert.match(res.headers()["content-type"] || "", /text\/html/);
    await page.locator("#conn[data-state=open]").waitFor();
    await waitText(page, "#me", /client #\d+/);
  }

  log("codec round trips in the page (UTF-8 byte lengths)");
  const codec = await A.evaluate(() => {
    const { encode, decode } = window.ChatCodec;
    const dec = (s) => decode(new TextEncoder().encode(s));
    return {
      send: encode("send", "iis", "1", "2", "héllo 🌍"),
      add: encode("addchatroom", "issss", 3, "a,b)(c", "", "ça", "pw"),
      empty: encode("getchatroomlist", "i", 0),
      chat: dec("chat(2,1,1,0,11,héllo 🌍)"),
      list: dec("chatroomlist(4,1,5,lobby9,2,7,6,a,b)(c8,0,)"),
      err: dec("error(27,Syntax error in parameters.5,)"),
      errNoM: dec("error(32,That message was not understood.)"),
      details: dec("chatroomdetails(9,1,5,lobby9,2,0,)"),
      members: dec("usersinchatroom(3,1,1,42,5,alice2,0,0,)"),
      success: dec("success(8,)"),
      oldSuccess: dec("success(8)"),
      registered: dec("registered(5,43,)"),
      deleted: dec("accountdeleted(6,43,)"),
      register: encode("register", "iss", 5, "zoë", "pässwrd"),
      bad: (() => { try { dec("chat(1,1,1,1,99,short)"); return "parsed"; } catch (e) { return "rejected"; } })(),
    };
  });
  assert.equal(codec.send, "send(1,2,11,héllo 🌍)");
  assert.equal(codec.add, "addchatroom(3,6,a,b)(c0,3,ça2,pw)");
  assert.equal(codec.empty, "getchatroomlist(0,)");
  assert.deepEqual(codec.chat.f, ["2", "1", "1", "0", "héllo 🌍"]);
  assert.deepEqual(codec.list.rows, [["1", "lobby", "9", "2"], ["7", "a,b)(c", "8", "0"]]);
  assert.deepEqual(codec.err.f, ["Syntax error in parameters.", "5"]);
  assert.deepEqual(codec.errNoM.f, ["That message was not understood."]);
  assert.deepEqual(codec.details.f, ["9", "1", "lobby", "9", "2", ""]);
  assert.deepEqual(codec.members.rows, [["1", "42", "alice"], ["2", "0", ""]]);
  assert.deepEqual(codec.success.f, ["8"]);
  assert.deepEqual(codec.oldSuccess.f, ["8"]);
  assert.deepEqual(codec.registered.f, ["5", "43"]);
  assert.deepEqual(codec.deleted.f, ["6", "43"]);
  assert.equal(codec.register, "register(5,4,zoë8,pässwrd)");
  assert.equal(codec.bad, "rejected");

  log("A: admin panel, wrong password is reported inline");
  await A.locator("#admin > summary").click();
  await A.fill("#admin-pw", PASSWORD + "-wrong");
  await addUser(A, "1", "alice", "alice-pw");
  await waitText(A, "#au-note.err", /Incorrect server password/);

  log("A: add users alice and bob");
  await A.fill("#admin-pw", PASSWORD);
  await addUser(A, "1", "alice", "alice-pw");
  await waitText(A, "#au-note.ok", /Added alice/);
  await addUser(A, "2", "bob", "bob-pw");
  await waitText(A, "#au-note.ok", /Added bob/);
  await addUser(A, "3", "alice", "x");
  await waitText(A, "#au-note.err", /user name is already in use/);
  await A.click("#lu-btn");
  await waitText(A, "#lu-note.ok", /2 users/);
  await waitText(A, "#lu-table tbody", /alice[\s\S]*bob/);

  log("log in: a wrong password is reported, then alice in A and bob in B");
  await login(B, "bob", "nope");
  await waitText(B, "#login-note.err", /Incorrect login/);
  await login(A, "alice", "alice-pw");
  await waitText(A, "#me", /Signed in as alice/);
  await login(B, "bob", "bob-pw");
  await waitText(B, "#me", /Signed in as bob/);

  log("A: create a room with a question");
  const roomName = "Café ☕ 日本";
  await A.fill("#cr-name", roomName);
  await A.fill("#cr-question", "Combien font 2+2 ? 🤔");
  await A.fill("#cr-answer", "quatre");
  await A.click("#cr-btn");
  await waitText(A, "#cr-note.ok", /Created “Café ☕ 日本” \(#\d+, temporary\)/);
  const viewA = A.locator("section.room:not([hidden])");
  await waitText(A, "section.room:not([hidden]) .title", roomName);
  const roomId = await viewA.getAttribute("data-room-id");
  assert.match(roomId, /^\d+$/);

  log(`B: room #${roomId} appears in the list; join asks the question`);
  const item = B.locator(`#rooms li[data-room-id="${roomId}"]`);
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .room-name`, roomName);
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /1 member[\s\S]*question[\s\S]*temporary/);
  await item.locator("button.join").click();
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .question`, "Question: Combien font 2+2 ? 🤔");
  await item.locator("input.answer").fill("cinq");
  await item.locator("input.answer").press("Enter");
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .note.err`, /answer was wrong/);
  await item.locator("input.answer").fill("quatre");
  await item.locator("input.answer").press("Enter");
  const viewB = B.locator(`section.room[data-room-id="${roomId}"]`);
  await viewB.locator(".title").waitFor();
  await waitText(B, `section.room[data-room-id="${roomId}"]:not([hidden]) .title`, roomName);
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /2 members[\s\S]*joined/);

  log("both see both members");
  await waitText(A, `section.room[data-room-id="${roomId}"] .members`, /alice \(you\)[\s\S]*bob/);
  await waitText(B, `section.room[data-room-id="${roomId}"] .members`, /alice[\s\S]*bob \(you\)/);
  await waitText(A, `section.room[data-room-id="${roomId}"] .log`, /bob joined/);
  await waitText(A, `section.room[data-room-id="${roomId}"] .count`, /2 members/);

  log("chat both ways with non-ASCII text (Enter sends)");
  const roomLog = `section.room[data-room-id="${roomId}"] .log`;
  await say(A, roomId, "héllo 🌍");
  await waitRow(B, roomLog, "alice", "héllo 🌍");
  await waitRow(A, roomLog, "alice", "héllo 🌍");
  await say(B, roomId, "ça va? 日本語");
  await waitRow(A, roomLog, "bob", "ça va? 日本語");
  await waitRow(B, roomLog, "bob", "ça va? 日本語");
  await say(A, roomId, "a,b)(c 0, 5,x — ½ 👩‍👩‍👧‍👦");
  await waitRow(B, roomLog, "alice", "a,b)(c 0, 5,x — ½ 👩‍👩‍👧‍👦");
  await say(B, roomId, "line one\nline two ✓");
  await waitRow(A, roomLog, "bob", "line one\nline two ✓");

  log("A: private message to bob by clicking his name");
  await A.locator(`section.room[data-room-id="${roomId}"] .members button`, { hasText: "bob" }).click();
  await A.locator("#view-private:not([hidden])").waitFor();
  assert.equal(await A.inputValue("#pm-kind"), "user");
  assert.equal(await A.inputValue("#pm-id"), "2");
  await waitText(A, "#pm-who", "→ bob");
  await A.fill("#pm-text", "secret 🤫 pour bob");
  await A.press("#pm-text", "Enter");
  await waitRow(A, "#pm-log", "you → bob", "secret 🤫 pour bob");
  await waitText(B, "#tab-private .unread:not([hidden])", "1");
  await B.click("#tab-private");
  await waitRow(B, "#pm-log", "alice → you", "secret 🤫 pour bob");

  log("B: an unknown user is reported inline; reply to alice");
  await B.selectOption("#pm-kind", "user");
  await B.fill("#pm-id", "99");
  await B.fill("#pm-text", "anyone?");
  await B.press("#pm-text", "Enter");
  await waitText(B, "#pm-note.err", /user wasn.t found/);
  await B.locator("#pm-log .msg.pm", { hasText: "alice → you" }).locator("button", { hasText: "reply" }).click();
  await B.fill("#pm-text", "merci ❤️");
  await B.press("#pm-text", "Enter");
  await waitRow(A, "#pm-log", "bob → you", "merci ❤️");

  await noJunk(A);
  await noJunk(B);

  log("screenshots of both pages in the room");
  await A.locator("#admin > summary").click(); // collapse it again, so the room list shows
  await A.locator("#admin:not([open])").waitFor();
  await A.locator(`#tabs button[data-view="room-${roomId}"]`).click();
  await B.locator(`#tabs button[data-view="room-${roomId}"]`).click();
  await A.screenshot({ path: join(ARTIFACTS, "page-a.png"), timeout: STEP_MS });
  await B.screenshot({ path: join(ARTIFACTS, "page-b.png"), timeout: STEP_MS });

  log("1,000 messages (500 from each page, within the server's rate limit): pages stay responsive");
  const half = 500;
  const started = Date.now();
  await Promise.all([flood(A, roomId, "A", half), flood(B, roomId, "B", half)]);
  // Each sender's messages arrive in order, so once both pages show both senders' last rows,
  // every row is there.
  for (const page of [A, B]) {
    await waitRow(page, roomLog, "alice", `burst A ${half} ✓`, 30_000);
    await waitRow(page, roomLog, "bob", `burst B ${half} ✓`, 30_000);
  }
  const burst = 2 * half;
  for (const page of [A, B]) {
    const rows = await page.evaluate((sel) => [...document.querySelectorAll(`${sel} .text`)].filter((t) => t.textContent.startsWith("burst ")).length, roomLog);
    assert.equal(rows, burst, "burst rows shown");
    assert.equal(await page.locator("#server-note").textContent(), "", "no server error during the burst");
  }
  const pingMs = await timed(() => B.evaluate(() => document.querySelectorAll(".msg").length));
  console.log(`    burst delivered and rendered in ${Date.now() - started} ms; page answers in ${pingMs} ms`);
  assert.ok(pingMs < 1000, `page B took ${pingMs} ms to answer after the burst`);
  const atBottom = await B.evaluate((sel) => {
    const e = document.querySelector(sel);
    return e.scrollHeight - e.scrollTop - e.clientHeight < 80;
  }, roomLog);
  assert.ok(atBottom, "the log did not follow new messages");

  log("phone width: B has no horizontal overflow");
  await B.setViewportSize({ width: 390, height: 800 });
  const overflow = await B.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page B overflows by ${overflow}px at 390px`);
  await B.screenshot({ path: join(ARTIFACTS, "page-b-phone.png"), timeout: STEP_MS });
  await B.setViewportSize({ width: 1100, height: 720 });

  log("snaps: alice sends one to bob; bob opens it; alice sees it read");
  await A.click("#tab-snaps");
  await A.fill("#sn-to", "2");
  await A.fill("#sn-expire", "0");
  await A.fill("#sn-read", "60");
  await A.fill("#sn-text", "snap ✨ à lire");
  await A.press("#sn-text", "Enter");
  await waitText(A, "#sn-note.ok", /Snap #\d+ sent/);
  await waitText(B, "#tab-snaps .unread:not([hidden])", "1");
  await B.click("#tab-snaps");
  const snapB = B.locator("#sn-list .snap").first();
  await waitText(B, "#sn-list .snap .body.sealed", /Sealed/);
  await waitText(B, "#sn-list .snap .meta", /from alice to bob/);
  await snapB.locator("button.read").click();
  await waitText(B, "#sn-list .snap .body:not(.sealed)", "snap ✨ à lire");
  await waitText(B, "#sn-list .snap .meta", / · read \d.*disappears/);
  await waitText(A, "#sn-list .snap .meta", /from alice to bob · sent .* · read \d/);
  await waitText(A, "#sn-list .snap .body", "snap ✨ à lire");

  log("admin: send to everyone reaches bob");
  await A.locator("#admin > summary").click();
  await A.fill("#sa-text", "maintenance à 5h 🛠");
  await A.press("#sa-text", "Enter");
  await waitText(A, "#sa-note.ok", /Sent to everyone/);
  await waitRow(B, "#pm-log", "📣 alice to everyone", "maintenance à 5h 🛠");

  log("reconnect: A's socket drops while bob talks; it reconnects, logs in, rejoins and resumes");
  await A.locator(`#tabs button[data-view="room-${roomId}"]`).click();
  await B.locator(`#tabs button[data-view="room-${roomId}"]`).click();
  // The network goes away: the socket closes and every reconnect attempt fails, until it is
  // back, so bob's messages are certainly said while alice is away.
  await A.evaluate(() => {
    const Real = window.WebSocket;
    window.__offline = true;
    window.WebSocket = function (url, protocol) {
      if (!window.__offline) return new Real(url, protocol);
      const failed = { send() {}, close() {} };
      setTimeout(() => failed.onclose && failed.onclose({ code: 1006 }), 0);
      return failed;
    };
    window.ChatDebug.state.ws.close();
  });
  await A.locator("#conn[data-state=closed]").waitFor();
  for (let k = 1; k <= 5; k++) await say(B, roomId, `while away ${k}`);
  await A.evaluate(() => { window.__offline = false; });
  await A.locator("#conn[data-state=open]").waitFor();
  await waitRow(A, roomLog, "bob", "while away 5");
  const away = await A.evaluate((sel) => [...document.querySelectorAll(`${sel} .text`)].map((t) => t.textContent).filter((t) => t.startsWith("while away")), roomLog);
  assert.deepEqual(away, [1, 2, 3, 4, 5].map((k) => `while away ${k}`), "every missed message once, in order");
  assert.doesNotMatch(await A.locator(roomLog).textContent(), /could not be recovered/);
  const resumed = await A.evaluate(() => window.ChatDebug.log.join("\n"));
  assert.match(resumed, /< history\(\d+,\d+,\d+,.*while away 1/, "the missed messages came through a resume");
  assert.match(resumed, /< recovered\(\d+,\d+,1,\)/);
  await waitText(A, "#me", /Signed in as alice/);
  await waitText(B, roomLog, /alice left\.[\s\S]*alice joined\./);
  await waitText(A, roomLog, /Disconnected\.[\s\S]*You joined\./);
  await waitText(A, `section.room[data-room-id="${roomId}"] .members`, /alice \(you\)[\s\S]*bob|bob[\s\S]*alice \(you\)/);
  await say(A, roomId, "de retour 🔁");
  await waitRow(B, roomLog, "alice", "de retour 🔁");

  log("B reloads the page: after signing in and joining again it shows the room's recent history");
  await B.reload();
  await B.locator("#conn[data-state=open]").waitFor();
  await login(B, "bob", "bob-pw");
  await waitText(B, "#me", /Signed in as bob/);
  await item.locator("button.join").click();
  await item.locator("input.answer").fill("quatre");
  await item.locator("input.answer").press("Enter");
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /2 members[\s\S]*joined/);
  await waitRow(B, roomLog, "alice", "de retour 🔁");
  await waitRow(B, roomLog, "bob", "while away 5");
  await noJunk(B);

  log("B logs out: leaves the room, A sees it");
  await B.click("#logout-btn");
  await waitText(B, "#me", /^Anonymous/);
  await waitText(B, roomLog, /You left this room/);
  await waitText(A, roomLog, /bob left/);
  await waitText(A, `section.room[data-room-id="${roomId}"] .count`, /1 member\b/);
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /^#\d+1 member🔒 questiontemporary$/);
  await noJunk(B);

  log("B: register a new user from the page; each refusal is explained; then it is signed in");
  await B.click("#register-open");
  await B.locator("#acct[open] #rg-form:not([hidden])").waitFor();
  await waitText(B, "#rg-form", /password of at least 8 bytes/);
  await register(B, "carol ✿", "short");
  await waitText(B, "#acct-note.err", "Password must be 8 to 1024 bytes.");
  await B.screenshot({ path: join(ARTIFACTS, "page-register.png"), timeout: STEP_MS });
  await register(B, "alice", "long enough");
  await waitText(B, "#acct-note.err", "That user name is already in use.");
  await register(B, "carol ✿", "carol-password");
  await waitText(B, "#acct-note.ok", /^Welcome, carol ✿: you are user #\d+\.$/);
  await waitText(B, "#me", /^Signed in as carol ✿ · client #\d+$/);
  await waitText(B, "#acct-title", "Account: carol ✿");
  await B.locator("#rg-form[hidden]").waitFor({ state: "attached" });

  log("carol joins the room and chats with alice");
  await item.locator("button.join").click();
  await item.locator("input.answer").fill("quatre");
  await item.locator("input.answer").press("Enter");
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /2 members[\s\S]*joined/);
  await waitText(A, `section.room[data-room-id="${roomId}"] .members`, "carol ✿");
  await waitText(A, roomLog, /carol ✿ joined\./);
  await say(B, roomId, "bonjour, je suis nouvelle 🌱");
  await waitRow(A, roomLog, "carol ✿", "bonjour, je suis nouvelle 🌱");
  await say(A, roomId, "bienvenue 🎉");
  await waitRow(B, roomLog, "alice", "bienvenue 🎉");

  log("carol changes her password, then deletes her account (wrong passwords refused)");
  await B.fill("#cp-old", "wrong-password");
  await B.fill("#cp-new", "carol-password-2");
  await B.click("#cp-btn");
  await waitText(B, "#acct-note.err", "Incorrect login.");
  await B.fill("#cp-old", "carol-password");
  await B.click("#cp-btn");
  await waitText(B, "#acct-note.ok", /Password changed/);
  await B.fill("#da-pass", "carol-password");
  await B.click("#da-btn");
  await waitText(B, "#acct-note.err", "Incorrect login.");
  await B.fill("#da-pass", "carol-password-2");
  await B.click("#da-btn");
  await waitText(B, "#acct-note.ok", "Deleted the account “carol ✿”.");
  await waitText(B, "#login-note.err", "The account “carol ✿” was deleted; you are signed out.");
  await waitText(B, "#me", /^Anonymous/);
  await waitText(B, "#acct-title", "Create an account");
  await B.locator("#rg-form:not([hidden])").waitFor();
  await waitText(A, roomLog, /carol ✿ left\./);
  await waitText(B, `#rooms li[data-room-id="${roomId}"] .badges`, /^#\d+1 member🔒 questiontemporary$/);
  await noJunk(B);

  log("admin: delete the room; both pages show it gone");
  await A.fill("#dr-id", roomId);
  await A.press("#dr-id", "Enter");
  await waitText(A, "#dr-note.ok", `Deleted room #${roomId}`);
  await waitText(A, roomLog, /This room was deleted/);
  await B.locator(`#rooms li[data-room-id="${roomId}"]`).waitFor({ state: "detached" });
  await A.locator(`#rooms li[data-room-id="${roomId}"]`).waitFor({ state: "detached" });

  log("the protocol log panel never shows passwords or room answers");
  for (const page of [A, B]) {
    const shown = await page.evaluate(() => window.ChatDebug.log.join("\n"));
    for (const secret of [PASSWORD, "alice-pw", "bob-pw", "quatre", "carol-password", "wrong-password", "long enough"]) {
      assert.ok(!shown.includes(secret), `protocol log shows ${JSON.stringify(secret)}`);
    }
  }

  await noJunk(A);
  await noJunk(B);
  assert.deepEqual(pageErrors, [], "errors in the pages");
  log("PASS");
} catch (e) {
  console.error(`\nFAILED at step: ${step}\n${e.stack || e}`);
  if (pageErrors.length) console.error(`page errors:\n  ${pageErrors.join("\n  ")}`);
  for (const [name, page] of [["a", A], ["b", B]]) {
    if (!page) continue;
    try {
      await page.screenshot({ path: join(ARTIFACTS, `failure-page-${name}.png`), timeout: 5000 });
      const trace = await page.evaluate(() => window.ChatDebug ? window.ChatDebug.log.slice(-60).join("\n") : "(no log)");
      console.error(`\n--- protocol log of page ${name.toUpperCase()} (last 60) ---\n${trace}`);
    } catch (e2) {
      console.error(`(could not capture page ${name}: ${e2.message})`);
    }
  }
  process.exitCode = 1;
} finally {
  await Promise.all(contexts.map((c) => c.close().catch(() => {})));
  for (const p of profiles) rmSync(p, { recursive: true, force: true });
  clearTimeout(watchdog);
}

// --- helpers -----------------------------------------------------------------------------------

async function addUser(page, id, name, pw) {
  await page.fill("#au-id", id);
  await page.fill("#au-name", name);
  await page.fill("#au-pass", pw);
  await page.click("#au-btn");
}

async function register(page, user, pw) {
  await page.fill("#rg-user", user);
  await page.fill("#rg-pass", pw);
  await page.press("#rg-pass", "Enter");
}

async function login(page, user, pw) {
  await page.fill("#login-user", user);
  await page.fill("#login-pass", pw);
  await page.press("#login-pass", "Enter");
}

async function say(page, roomId, text) {
  const box = page.locator(`section.room[data-room-id="${roomId}"] form.send textarea`);
  const lines = text.split("\n");
  await box.fill(lines[0]);
  for (const line of lines.slice(1)) {
    await box.press("Shift+Enter");
    await box.pressSequentially(line);
  }
  assert.equal(await box.inputValue(), text);
  await box.press("Enter");
  await page.waitForFunction((e) => e.value === "", await box.elementHandle(), { timeout: STEP_MS });
}

/** Waits until the element's text matches (string: contains; RegExp: test). */
async function waitText(page, selector, expected, timeout = STEP_MS) {
  const loc = page.locator(selector).first();
  try {
    await loc.waitFor({ state: "attached", timeout });
    await page.waitForFunction(
      ({ sel, src, flags, str }) => {
        const e = document.querySelector(sel);
        if (!e) return false;
        const t = e.textContent;
        return str != null ? t.includes(str) : new RegExp(src, flags).test(t);
      },
      typeof expected === "string"
        ? { sel: selector, str: expected }
        : { sel: selector, src: expected.source, flags: expected.flags },
      { timeout },
    );
  } catch (e) {
    const got = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => "(missing)");
    throw new Error(`${selector}: expected ${expected}, got ${JSON.stringify(got)}`);
  }
}

/** Waits for a message row in `logSel` with sender `who` and exactly the text `text`. */
async function waitRow(page, logSel, who, text, timeout = STEP_MS) {
  try {
    await page.waitForFunction(
      ({ logSel, who, text }) => {
        const log = document.querySelector(logSel);
        if (!log) return false;
        for (let row = log.lastElementChild; row; row = row.previousElementSibling) {
          const w = row.querySelector(".who"), t = row.querySelector(".text");
          if (w && t && w.textContent === who && t.textContent === text) return true;
        }
        return false;
      },
      { logSel, who, text },
      { timeout },
    );
  } catch (e) {
    const got = await page.locator(logSel).first().innerText({ timeout: 1000 }).catch(() => "(missing)");
    throw new Error(`${logSel}: no row "${who}: ${text}"; the log shows:\n${got.slice(-1500)}`);
  }
}

/**
 * Sends `n` room messages from `page` straight through its socket, 100 per 1.1 s: under the
 * server's default rate limit (100/s sustained, 200 burst), so none is refused.
 */
async function flood(page, roomId, tag, n) {
  const sent = await page.evaluate(
    async ({ R, tag, n }) => {
      const { encode } = window.ChatCodec;
      const ws = window.ChatDebug.state.ws;
      let k = 0;
      while (k < n) {
        for (let j = 0; j < 100 && k < n; j++) {
          k++;
          ws.send(encode("send", "iis", 100000 + k, R, `burst ${tag} ${k} ✓`));
        }
        if (k < n) await new Promise((r) => setTimeout(r, 1100));
      }
      return k;
    },
    { R: roomId, tag, n },
  );
  assert.equal(sent, n);
}

/** Fails if any text in the page (hidden views included) shows a JS value by mistake. */
async function noJunk(page) {
  const junk = await page.evaluate(() => {
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => (n.parentElement.closest("script, style, template, #debug") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    const found = [];
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (/\b(null|undefined|NaN)\b|\[object /.test(n.textContent)) found.push(n.parentElement.outerHTML.slice(0, 200));
    }
    return found;
  });
  assert.deepEqual(junk, [], "stray null/undefined/NaN in the page");
}

async function timed(fn) {
  const s = Date.now();
  await fn();
  return Date.now() - s;
}
