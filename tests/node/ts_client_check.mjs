// A real MCP client: the official TypeScript SDK (@modelcontextprotocol/sdk, pinned in
// package.json) drives the molecule-mcp binary over stdio. Run by tests/tests/node_client.rs,
// which starts the platform stub and passes:
//   MCP_BIN  the binary
//   MCP_ENV  JSON object: the binary's environment (PLATFORM_URL, WORKSPACE_ID, …)
// Prints one line per scenario, `RESULT <era> <scenario> pass|fail <detail>`, and exits 1 if
// any failed. The SDK itself speaks the legacy handshake (it asks for 2025-11-25); the
// 2024-11-05 era is this SDK talking to us after its initialize request was rewritten to ask
// for 2024-11-05, and the 2026-07-28 era is requests with the modern `_meta` sent through
// the SDK's own request path.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ResultSchema } from '@modelcontextprotocol/sdk/types.js';

const bin = process.env.MCP_BIN;
const serverEnv = JSON.parse(process.env.MCP_ENV ?? '{}');
let failures = 0;

function report(era, scenario, ok, detail = '') {
  if (!ok) failures += 1;
  console.log(`RESULT ${era} ${scenario} ${ok ? 'pass' : 'fail'} ${detail}`.trimEnd());
}

async function check(era, scenario, body) {
  try {
    const detail = await body();
    report(era, scenario, true, detail ?? '');
  } catch (e) {
    report(era, scenario, false, String(e?.stack ?? e).split('\n').slice(0, 3).join(' | '));
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

async function connect(extraEnv = {}, askFor = null) {
  const transport = new StdioClientTransport({
    command: bin,
    args: [],
    env: { ...serverEnv, ...extraEnv },
    stderr: 'ignore',
  });
  if (askFor) {
    // Rewrites the SDK's initialize request to ask for an older revision.
    const send = transport.send.bind(transport);
    transport.send = (message, options) => {
      if (message.method === 'initialize') {
        message = { ...message, params: { ...message.params, protocolVersion: askFor } };
      }
      return send(message, options);
    };
  }
  const client = new Client({ name: 'molecule-ts-check', version: '0' }, { capabilities: {} });
  await client.connect(transport);
  return client;
}

const KEEPALIVE = {
  MOLECULE_MCP_PROGRESS_INTERVAL_MS: '100',
  MOLECULE_MCP_CALL_BUDGET_MS: '800',
};

async function legacy(era, askFor) {
  const client = await connect(KEEPALIVE, askFor);
  try {
    await check(era, 'handshake', async () => {
      const version = client.getServerVersion();
      assert(version?.name === 'molecule-mcp', `serverInfo ${JSON.stringify(version)}`);
      const caps = client.getServerCapabilities();
      assert(caps?.experimental?.['claude/channel'], 'claude/channel capability');
      return version.version;
    });
    await check(era, 'tools/list', async () => {
      const { tools } = await client.listTools();
      assert(tools.length === 12, `${tools.length} tools`);
      const wait = tools.find((t) => t.name === 'wait_for_message');
      const modern = askFor === null;
      assert(Boolean(wait.outputSchema) === modern, `outputSchema present=${Boolean(wait.outputSchema)}`);
      assert(Boolean(wait.annotations) === modern, `annotations present=${Boolean(wait.annotations)}`);
      return `${tools.length} tools`;
    });
    await check(era, 'tools/call', async () => {
      const r = await client.callTool({ name: 'inbox_pop', arguments: { activity_id: 'none' } });
      assert(!r.isError, JSON.stringify(r));
      assert(Boolean(r.structuredContent) === (askFor === null), 'structuredContent by era');
      assert(JSON.parse(r.content[0].text).removed === false, r.content[0].text);
      return 'inbox_pop';
    });
    await check(era, 'long-call-times-out-without-reset', async () => {
      // A 1 s client timeout that progress does not reset: the SDK gives up.
      try {
        await client.callTool(
          { name: 'wait_for_message', arguments: { timeout_secs: 3 } },
          undefined,
          { timeout: 1000, onprogress: () => {} },
        );
      } catch (e) {
        assert(e?.code === -32001, `expected RequestTimeout, got ${e}`);
        return 'RequestTimeout as expected';
      }
      throw new Error('the call did not time out');
    });
    await check(era, 'long-call-with-progress', async () => {
      const seen = [];
      const r = await client.callTool(
        { name: 'wait_for_message', arguments: { timeout_secs: 3 } },
        undefined,
        { timeout: 1000, resetTimeoutOnProgress: true, onprogress: (p) => seen.push(p) },
      );
      assert(!r.isError, JSON.stringify(r));
      assert(JSON.parse(r.content[0].text).timeout === true, r.content[0].text);
      assert(seen.length >= 5, `${seen.length} progress notifications`);
      for (let i = 1; i < seen.length; i += 1) {
        assert(seen[i].progress > seen[i - 1].progress, 'progress increases');
      }
      const withMessage = seen.every((p) => typeof p.message === 'string');
      assert(withMessage === (askFor !== '2024-11-05'), `message present=${withMessage}`);
      return `${seen.length} progress notifications over 3 s with a 1 s timeout`;
    });
    if (askFor === null) {
      await check(era, 'task-augmented-call', async () => {
        const caps = client.getServerCapabilities();
        assert(caps?.tasks?.requests?.tools?.call, `tasks capability ${JSON.stringify(caps?.tasks)}`);
        const kinds = [];
        let result = null;
        const stream = client.experimental.tasks.callToolStream(
          { name: 'wait_for_message', arguments: { timeout_secs: 1 } },
          undefined,
          { task: { ttl: 60000 } },
        );
        for await (const message of stream) {
          kinds.push(message.type);
          if (message.type === 'result') result = message.result;
          if (message.type === 'error') throw message.error;
        }
        assert(kinds[0] === 'taskCreated', `stream ${kinds.join(',')}`);
        assert(result && JSON.parse(result.content[0].text).timeout === true, JSON.stringify(result));
        const { tasks } = await client.experimental.tasks.listTasks();
        assert(tasks.some((t) => t.status === 'completed'), JSON.stringify(tasks));
        return kinds.join(' → ');
      });
    }
    await check(era, 'long-call-without-token-answers-in-budget', async () => {
      const started = Date.now();
      const r = await client.callTool(
        { name: 'wait_for_message', arguments: { timeout_secs: 120 } },
        undefined,
        { timeout: 5000 },
      );
      const body = JSON.parse(r.content[0].text);
      assert(body.call_again === true, r.content[0].text);
      return `answered "call again" after ${Date.now() - started} ms`;
    });
  } finally {
    await client.close();
  }
}

async function modern() {
  const era = '2026-07-28';
  const client = await connect(KEEPALIVE);
  const meta = {
    'io.modelcontextprotocol/protocolVersion': '2026-07-28',
    'io.modelcontextprotocol/clientCapabilities': {},
    'io.modelcontextprotocol/clientInfo': { name: 'molecule-ts-check', version: '0' },
  };
  try {
    await check(era, 'server/discover', async () => {
      const r = await client.request({ method: 'server/discover', params: { _meta: meta } }, ResultSchema);
      assert(r.supportedVersions.includes('2026-07-28'), JSON.stringify(r.supportedVersions));
      assert(r.resultType === 'complete', 'resultType');
      return r.supportedVersions.join(',');
    });
    await check(era, 'tools/list', async () => {
      const r = await client.request({ method: 'tools/list', params: { _meta: meta } }, ResultSchema);
      assert(r.tools.length === 12 && r.resultType === 'complete' && r.ttlMs === 0, JSON.stringify(r).slice(0, 200));
      return `${r.tools.length} tools`;
    });
    await check(era, 'tools/call', async () => {
      const r = await client.request(
        { method: 'tools/call', params: { name: 'inbox_pop', arguments: { activity_id: 'none' }, _meta: meta } },
        ResultSchema,
      );
      assert(r.structuredContent?.removed === false && r.resultType === 'complete', JSON.stringify(r));
      return 'inbox_pop';
    });
    await check(era, 'long-call-with-progress', async () => {
      const seen = [];
      const r = await client.request(
        { method: 'tools/call', params: { name: 'wait_for_message', arguments: { timeout_secs: 3 }, _meta: meta } },
        ResultSchema,
        { timeout: 1000, resetTimeoutOnProgress: true, onprogress: (p) => seen.push(p) },
      );
      assert(r.structuredContent?.timeout === true, JSON.stringify(r));
      assert(seen.length >= 5, `${seen.length} progress notifications`);
      return `${seen.length} progress notifications`;
    });
    await check(era, 'unsupported-version', async () => {
      try {
        await client.request(
          { method: 'tools/list', params: { _meta: { ...meta, 'io.modelcontextprotocol/protocolVersion': '1900-01-01' } } },
          ResultSchema,
        );
      } catch (e) {
        assert(e?.code === -32022, `code ${e?.code}`);
        assert(JSON.stringify(e.data?.supported) === '["2026-07-28"]', JSON.stringify(e.data));
        return e.message;
      }
      throw new Error('accepted 1900-01-01');
    });
  } finally {
    await client.close();
  }
}

await legacy('2025-11-25', null);
await legacy('2024-11-05', '2024-11-05');
await modern();
process.exit(failures === 0 ? 0 : 1);
