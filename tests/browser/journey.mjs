// The web client (web/) in a real headless Chromium (Debian's chromium, driven by puppeteer-core): a full
// journey from signup to a streamed reply on a phone-sized screen, an error case, an ended session, and the /docs
// page; then a second user switching chats while replies are pending (each reply in its own chat, once; Send free
// meanwhile; errors of a followed reply shown), a 200-character title, Enter in an IME composition, aria-current
// and the status region.
// Every page is served with a Content-Security-Policy and none of them breaks it.
// Usage: node tests/browser/journey.mjs BASE_URL   (prints one "ok - ..." / "not ok - ... [detail]" per check;
// exit status 0 even when checks fail: the caller counts the lines; non-zero when the browser cannot run).
import puppeteer from "puppeteer-core";

const base = process.argv[2];
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const results = [];
const check = (desc, ok, detail) => {
  results.push(ok);
  console.log((ok ? "ok - " : "not ok - ") + desc + (ok || !detail ? "" : " [" + detail + "]"));
};

// The Content-Security-Policy violations of every document a page loads (README, "Web client, API reference,
// metrics"): its securitypolicyviolation events, and the console's own CSP messages.
const watchCsp = async (p) => {
  const seen = [];
  await p.exposeFunction("gbCspViolation", (v) => seen.push(v));
  await p.evaluateOnNewDocument(() => {
    document.addEventListener("securitypolicyviolation", (e) => window.gbCspViolation(e.effectiveDirective + " "
      + (e.blockedURI || "?") + " at " + e.sourceFile + ":" + e.lineNumber + " " + (e.sample || "")));
  });
  p.on("console", (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.push("console: " + m.text().slice(0, 160));
  });
  return seen;
};
// A page's answer carries the policy the web server configurations give the static files.
const hasCsp = (res) => /^default-src 'self';.*frame-ancestors 'none'/.test(res?.headers()["content-security-policy"]);

const browser = await puppeteer.launch({
  executablePath: browserPath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 390, height: 844, isMobile: true, hasTouch: true });
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const pageCsp = await watchCsp(page);
  page.setDefaultTimeout(20000);

  const home = await page.goto(base + "/", { waitUntil: "networkidle0" });
  check("GET / shows the sign-in form", await page.$eval("#login", (e) => !e.hidden));
  check("GET / is served with a Content-Security-Policy", hasCsp(home), JSON.stringify(home?.headers()));

  // Error case: a wrong code shows the API's message and keeps the user on the code form.
  const mobile = "+1555" + String(Math.floor(Math.random() * 1e8)).padStart(8, "0");
  await page.type("#mobile", mobile);
  await page.type("#name", "Browser Test");
  await page.click("#mobile-form button[type=submit]");
  await page.waitForSelector("#otp-form:not([hidden])");
  const otp = await page.$eval("#otp", (e) => e.value);
  check("signup + send-otp: the mocked code is filled in", /^\d{6}$/.test(otp), otp);
  const wrong = otp === "000000" ? "111111" : "000000";
  await page.$eval("#otp", (e, v) => { e.value = v; }, wrong);
  await page.click("#otp-form button[type=submit]");
  await page.waitForSelector("#notice:not([hidden])");
  const notice = await page.$eval("#notice", (e) => e.textContent);
  check("a wrong code shows a clear error", /code|otp/i.test(notice) && !/undefined|\[object/.test(notice), notice);
  check("a wrong code keeps the code form", await page.$eval("#otp-form", (e) => !e.hidden));

  // The right code signs in.
  await page.$eval("#otp", (e, v) => { e.value = v; }, otp);
  await page.click("#otp-form button[type=submit]");
  await page.waitForSelector("#app:not([hidden])");
  check("verify-otp signs in and shows the app", true);
  await page.waitForFunction(() => document.querySelector("#usage").textContent.length > 0);
  check("the account bar shows the basic tier",
    (await page.$eval("#tier", (e) => e.textContent)) === "basic");
  check("the account bar shows the daily allowance",
    /5 of 5/.test(await page.$eval("#usage", (e) => e.textContent)));

  // Create a chatroom.
  await page.type("#room-title", "Browser chat");
  await page.click("#room-form button[type=submit]");
  await page.waitForSelector("#chat-view:not([hidden])");
  check("a new chat opens", (await page.$eval("#chat-title", (e) => e.textContent)) === "Browser chat");
  check("the new chat is listed",
    (await page.$$eval("#room-list button", (bs) => bs.map((b) => b.textContent))).some((t) => t.startsWith("Browser chat")));

  // Send a message and watch the reply stream in: record every text the reply bubble shows.
  await page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      const li = document.querySelector("#messages li.model");
      if (li) window.__seen.push({ text: li.textContent, cls: li.className });
    }).observe(document.querySelector("#messages"), { subtree: true, childList: true, characterData: true, attributes: true });
  });
  // The fake model streams this answer in 6 pieces 300 ms apart (its [[...]] directives), so the pieces can be seen.
  const text = "[[chunks:6]] [[chunkms:300]] Hello from the browser test";
  await page.type("#message", text);
  await page.click("#message-form button[type=submit]");
  await page.waitForSelector("#messages li.user");
  check("the sent message is shown",
    (await page.$eval("#messages li.user", (e) => e.textContent)) === text);
  await page.waitForSelector("#messages li.model.completed, #messages li.model.failed", { timeout: 60000 });
  const reply = await page.$eval("#messages li.model", (e) => ({ text: e.textContent, cls: e.className }));
  check("the reply completes", reply.cls.includes("completed") && reply.text.length > 0, JSON.stringify(reply));
  const seen = await page.evaluate(() => window.__seen);
  const partial = seen.filter((s) => s.cls.includes("pending") && s.text.length > 0 && s.text !== reply.text);
  check("the reply was shown in pieces before it completed (streamed)", partial.length > 0,
    seen.length + " states seen");
  await page.waitForFunction(() => /4 of 5/.test(document.querySelector("#usage").textContent));
  check("the allowance counts the message", true);

  // A lost answer: the message is stored but the 202 never reaches the page (the connection is reset). Sending
  // the same text again must not store it twice: the retry carries the first try's Idempotency-Key.
  const cdp = await page.target().createCDPSession();
  const keys = [];
  cdp.on("Fetch.requestPaused", (e) => {
    keys.push(e.request.headers["Idempotency-Key"]);
    const reset = keys.length === 1;
    cdp.send(reset ? "Fetch.failRequest" : "Fetch.continueRequest",
      reset ? { requestId: e.requestId, errorReason: "ConnectionReset" } : { requestId: e.requestId }).catch(() => {});
  });
  await cdp.send("Fetch.enable", { patterns: [{ urlPattern: "*/message", requestStage: "Response" }] });
  const submit = "#message-form button[type=submit]";
  await page.type("#message", "sent twice, stored once");
  await page.click(submit);
  for (let i = 0; i < 100 && keys.length < 1; i++) await new Promise((r) => setTimeout(r, 50));
  await page.waitForFunction((k) => !document.querySelector(k).disabled, {}, submit);
  await page.click(submit);
  await page.waitForFunction(() => !/4 of 5/.test(document.querySelector("#usage").textContent));
  await cdp.send("Fetch.disable");
  const usage = await page.$eval("#usage", (e) => e.textContent);
  check("a retry after a lost answer reuses the Idempotency-Key", keys.length === 2 && keys[0] === keys[1],
    JSON.stringify(keys));
  check("... so the message is stored once (3 of 5 left)", /3 of 5/.test(usage), usage);

  // Enter pressed twice in a row sends the message once and shows it once (the second Enter finds Send disabled).
  const twice = "[[chunks:2]] [[chunkms:300]] Enter pressed twice";
  await page.type("#message", twice);
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => /2 of 5/.test(document.querySelector("#usage").textContent));
  await page.waitForFunction((k) => !document.querySelector(k).disabled, { timeout: 60000 }, submit);
  const shown = await page.$$eval("#messages li.user", (ls, t) => ls.filter((l) => l.textContent === t).length, twice);
  check("Enter pressed twice sends the message once and shows it once", shown === 1, shown + " shown");

  // The server counts characters (code points), the browser's maxlength UTF-16 units: the box must take 8000
  // emoji, not stop at 4000.
  await page.focus("#message");
  await page.keyboard.sendCharacter("\u{1F600}".repeat(5000));
  const typed = await page.$eval("#message", (e) => [...e.value].length);
  check("the message box takes 5000 emoji (no UTF-16 maxlength)", typed === 5000, typed + " characters");
  await page.$eval("#message", (e) => { e.value = ""; });

  // Phone-sized screen: nothing wider than the viewport.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check("no horizontal overflow on a 390 px wide screen", overflow <= 0, overflow + " px");

  // Reload: the session and the chat persist.
  await page.reload({ waitUntil: "networkidle0" });
  await page.waitForSelector("#app:not([hidden])");
  check("a reload keeps the session", true);

  // Delete the chat.
  page.on("dialog", (d) => d.accept());
  await page.click("#room-list button");
  await page.waitForSelector("#chat-view:not([hidden])");
  await page.click("#room-delete");
  await page.waitForFunction(() => document.querySelectorAll("#room-list button").length === 0);
  check("a chat can be deleted", true);

  // A stored token the server no longer takes (expired, revoked): the page shows the sign-in form and says why.
  await page.evaluate(() => localStorage.setItem("gb_token", "eyJhbGciOiJIUzI1NiJ9.e30.expired"));
  await page.reload({ waitUntil: "networkidle0" });
  await page.waitForSelector("#login:not([hidden])");
  const ended = await page.$eval("#notice", (n) => (n.hidden ? "(hidden)" : n.textContent));
  check("an ended session shows the sign-in form and says the session ended", /session/i.test(ended), ended);

  check("no script errors on the page", pageErrors.length === 0, pageErrors.join("; "));
  check("no Content-Security-Policy violations on the page", pageCsp.length === 0, pageCsp.join("; "));

  // The API reference: rendered, an operation opened and tried (its request and the highlighted answer), all
  // within the policy (no inline script; Swagger UI's icons are data: images).
  const docs = await browser.newPage();
  const docsCsp = await watchCsp(docs);
  const docsRes = await docs.goto(base + "/docs", { waitUntil: "networkidle0" });
  check("GET /docs is served with a Content-Security-Policy", hasCsp(docsRes), JSON.stringify(docsRes?.headers()));
  await docs.waitForSelector(".swagger-ui .info .title", { timeout: 20000 }).catch(() => {});
  const title = await docs.$eval(".swagger-ui .info .title", (e) => e.textContent).catch((e) => String(e));
  check("/docs renders openapi.yaml with Swagger UI", /gemini/i.test(title), title);
  const ops = await docs.$$eval(".opblock-summary-path", (es) => es.map((e) => e.textContent));
  check("/docs lists the endpoints", ops.some((p) => p.includes("/chatroom")) && ops.length >= 15, ops.length + " paths");
  const tried = await (async () => {
    const op = "#operations-Operations-healthz";
    for (const button of [" .opblock-summary-control", " .try-out__btn", " .execute"]) {
      await docs.waitForSelector(op + button, { timeout: 5000 });
      await docs.click(op + button);
    }
    await docs.waitForSelector(op + " .live-responses-table .response-col_status", { timeout: 10000 });
    return docs.$eval(op + " .live-responses-table", (t) => t.textContent);
  })().catch((e) => String(e));
  check("/docs: Try it out on GET /healthz shows the answer", /200/.test(tried) && /"status"/.test(tried),
    tried.slice(0, 200));
  check("no Content-Security-Policy violations on /docs", docsCsp.length === 0, docsCsp.join("; "));

  // A second user (its own allowance) on a wide screen: several chats, replies pending while the user moves on.
  const ctx = await browser.createBrowserContext();
  const p2 = await ctx.newPage();
  await p2.setViewport({ width: 1024, height: 768 });
  const p2Errors = [];
  p2.on("pageerror", (e) => p2Errors.push(String(e)));
  const p2Csp = await watchCsp(p2);
  p2.setDefaultTimeout(20000);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  // Waits for fn(arg) in the page; false after ms, so one failing check does not stop the others.
  const until = (fn, arg, ms) => p2.waitForFunction(fn, { timeout: ms || 10000 }, arg).then(() => true, () => false);
  const ids = {};
  const open = async (title) => {
    await p2.click("#room-list button[data-id=\"" + ids[title] + "\"]");
    return until((t) => document.querySelector("#chat-title").textContent === t, title);
  };
  const say = async (text) => {
    await p2.$eval("#message", (e, t) => { e.value = t; }, text);
    await p2.click("#send");
  };
  const bubbles = (sel) => p2.$$eval("#messages li" + (sel || ""), (ls) => ls.map((l) => l.textContent));
  // Until the server has finished every reply of a chat (the page may still be following them).
  const settled = (title) => until(async (id) => {
    const auth = { Authorization: "Bearer " + localStorage.getItem("gb_token") };
    const r = await fetch("/chatroom/" + id, { headers: auth });
    return (await r.json()).messages.every((m) => m.status !== "pending");
  }, ids[title], 40000);
  // The replies' requests (/chatroom/ID/messages/ID/stream, ...?wait=) pass, or get what net says.
  const cdp2 = await p2.target().createCDPSession();
  let net = "pass";
  const unauthorized = { responseCode: 401, responseHeaders: [{ name: "Content-Type", value: "application/json" }],
    body: Buffer.from(JSON.stringify({ error: { code: "invalid_token", message: "Sign in again." } })).toString("base64") };
  cdp2.on("Fetch.requestPaused", (e) => {
    const send = net === "refuse" ? ["Fetch.failRequest", { errorReason: "ConnectionRefused" }]
      : net === "401" ? ["Fetch.fulfillRequest", unauthorized]
      : net === "no stream" && e.request.url.endsWith("/stream") ? ["Fetch.fulfillRequest", { responseCode: 404 }]
      : ["Fetch.continueRequest", {}];
    cdp2.send(send[0], Object.assign({ requestId: e.requestId }, send[1])).catch(() => {});
  });
  await cdp2.send("Fetch.enable", { patterns: [{ urlPattern: "*/messages/*", requestStage: "Request" }] });

  await p2.goto(base + "/", { waitUntil: "networkidle0" });
  await p2.type("#mobile", "+1555" + String(Math.floor(Math.random() * 1e8)).padStart(8, "0"));
  await p2.click("#mobile-form button[type=submit]");
  await p2.waitForSelector("#otp-form:not([hidden])");
  await p2.click("#otp-form button[type=submit]");
  await p2.waitForSelector("#app:not([hidden])");
  for (const title of ["L".repeat(200), "Room C", "Room D"]) {
    await p2.type("#room-title", title);
    await p2.click("#room-form button[type=submit]");
    await until((t) => document.querySelector("#chat-title").textContent === t, title);
    ids[title] = await p2.$$eval("#room-list button",
      (bs, t) => bs.find((b) => b.firstChild.textContent === t).dataset.id, title);
    if (title.length === 200) {
      // A title without spaces wraps: nothing wider than the screen, "Delete chat" on it, wide and phone-sized.
      for (const width of [1024, 390]) {
        await p2.setViewport({ width, height: 768 });
        const fit = await p2.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth,
          Math.ceil(document.querySelector("#room-delete").getBoundingClientRect().right)]);
        check("a 200-character title without spaces fits a " + width + " px screen, Delete chat on it",
          fit[0] <= fit[1] && fit[2] <= fit[1], "scrollWidth, innerWidth, Delete's right edge: " + fit);
      }
      await p2.setViewport({ width: 1024, height: 768 });
    }
  }
  const a11y = await p2.evaluate(() => ({
    current: [...document.querySelectorAll("#room-list [aria-current]")]
      .map((b) => b.firstChild.textContent + "=" + b.getAttribute("aria-current")),
    live: [...document.querySelectorAll("[aria-live], [role=status]")]
      .filter((e) => e.contains(document.querySelector("#messages"))).length,
    status: !!document.querySelector("#chat-view [role=status], #chat-view [aria-live]"),
  }));
  check("the open chat, and only it, is aria-current", a11y.current.join() === "Room D=true", a11y.current.join());
  check("no live region around the messages, a status region for replies", a11y.live === 0 && a11y.status,
    JSON.stringify(a11y));

  // Enter that ends an IME composition (keyCode 229, isComposing) does not send.
  await p2.$eval("#message", (e) => {
    e.value = "ime composition";
    e.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", isComposing: true, bubbles: true, cancelable: true }));
    e.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", keyCode: 229, bubbles: true, cancelable: true }));
  });
  await sleep(1000);
  const ime = await bubbles();
  check("Enter during an IME composition does not send", ime.length === 0, ime.length + " bubbles");
  await p2.$eval("#message", (e) => { e.value = ""; });

  // Send is free again once the message is stored: a second message goes while the first reply is pending (12 s:
  // still pending when the user leaves the chat, even after the old code's 6 s of failed waits here).
  await say("[[delay:12000]] slow one");
  const freed = await until(() => !document.querySelector("#send").disabled
    && document.querySelector("#messages li.model.pending"), null, 3000);
  check("Send is enabled again while the reply is pending", freed);
  check("the pending reply is aria-busy",
    (await p2.$$eval("#messages li.model", (ls) => ls.map((l) => l.getAttribute("aria-busy")))).join() === "true");
  net = "no stream"; // this one is followed by long-poll
  await say("second while pending");
  const second = await until(() => [...document.querySelectorAll("#messages li.user")]
    .some((l) => l.textContent === "second while pending"), null, 3000);
  check("a second message can be sent while the first reply is pending", second);
  await sleep(500);
  // Switch chats while both replies are being written: they must not land in the other chat.
  await open("Room C");
  net = "pass";
  await settled("Room D");
  await sleep(1500);
  const inC = await bubbles();
  check("replies finished after the user left their chat are not shown in the open one (stream, long-poll)",
    inC.length === 0, JSON.stringify(inC));
  await open("Room D");
  await until(() => document.querySelectorAll("#messages li.model.completed").length === 2, null, 5000);
  const inD = await bubbles(".model");
  check("... and are in their own chat, once each", inD.length === 2 && inD.some((t) => /slow one/.test(t))
    && inD.some((t) => /second while pending/.test(t)), JSON.stringify(inD));

  // Leave a chat and come back before its reply is done: one bubble, which is announced when done.
  await open("Room C");
  await say("[[delay:5000]] twice?");
  await p2.waitForSelector("#messages li.model.pending");
  await open("Room D");
  await open("Room C");
  await until(() => document.querySelector("#messages li.model.completed"), null, 30000);
  await sleep(1500);
  const once = await bubbles(".model");
  check("a reply left and come back to is shown once", once.length === 1, JSON.stringify(once));
  const said = await p2.$eval("#chat-view", (v) => (v.querySelector("[role=status]") || {}).textContent);
  check("the finished reply is announced in the status region", /twice\?/.test(said || ""), said);

  // A reply followed on opening a chat whose server cannot be reached: the error is shown (not an unhandled
  // rejection); a 401 there shows the sign-in form.
  await open("Room D");
  await say("[[delay:9000]] cut off");
  await p2.waitForSelector("#messages li.model.pending");
  await open("Room C");
  net = "refuse";
  await open("Room D");
  const shownErr = await until(() => /cannot be reached/
    .test(document.querySelector("#notice:not([hidden])")?.textContent), null, 5000);
  check("a network error while following a reply on opening a chat is shown", shownErr,
    await p2.$eval("#notice", (n) => n.hidden + " " + n.textContent));
  net = "401";
  await open("Room C");
  await open("Room D");
  check("a 401 while following a reply on opening a chat shows the sign-in form",
    await until(() => !document.querySelector("#login").hidden, null, 5000));
  const why = await p2.$eval("#notice", (n) => (n.hidden ? "(hidden)" : n.textContent));
  check("... and says the session ended", /session/i.test(why), why);
  check("no script errors (unhandled rejections) on the second page", p2Errors.length === 0, p2Errors.join("; "));
  check("no Content-Security-Policy violations on the second page", p2Csp.length === 0, p2Csp.join("; "));
  await cdp2.send("Fetch.disable");
} catch (e) {
  check("the browser journey ran to the end", false, String(e).split("\n")[0]);
} finally {
  await browser.close();
}
