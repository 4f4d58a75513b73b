import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import {
  IdempotencyKeyReusedError,
  InvalidIdempotencyOptionsError,
  migrate,
  openStoredJson,
  ReplayCache,
  ResponseDecryptionError,
  type ResponseEncryption,
  responseEncryption,
  sealStoredJson,
  withIdempotency,
} from '../src/index.ts';
import { uniqueKey, useLedgerFixture } from './support/ledger-fixture.ts';

const fx = useLedgerFixture();

const key1 = randomBytes(32);
const key2 = randomBytes(32);
const k1 = responseEncryption({ keys: [{ id: 'k1', key: key1 }] });
const k2k1 = responseEncryption({
  keys: [
    { id: 'k2', key: key2 },
    { id: 'k1', key: key1 },
  ],
});

/** A business write whose response carries a distinctive string, looked for in the raw column. */
function chargeCard(scope: string, key: string) {
  return async (trx: typeof fx.db) => {
    const row = await trx
      .insertInto('payments')
      .values({ scope, key, amount: 4200 })
      .returning(['id'])
      .executeTakeFirstOrThrow();
    return { paymentId: String(row.id), card: '4111-1111-1111-1111', holder: 'Zoë Secretname' };
  };
}

async function rawResponse(scope: string, key: string): Promise<string | null> {
  const { rows } = await sql<{ response: string | null }>`
    select response::text as response from idempotency.ledger
     where scope = ${scope} and key = ${key}`.execute(fx.db);
  return rows[0]?.response ?? null;
}

async function setRawResponse(scope: string, key: string, text: string | null): Promise<void> {
  await sql`update idempotency.ledger set response = ${text}::json
             where scope = ${scope} and key = ${key}`.execute(fx.db);
}

/** Records one encrypted call for a fresh key, and returns its scope, key and first response. */
async function recorded(encryption: ResponseEncryption, onConcurrent?: 'optimistic') {
  const scope = 'tenant:enc';
  const key = uniqueKey();
  const options = { scope, key, request: { amount: 4200 }, encryption, onConcurrent };
  const first = await withIdempotency(fx.db, options, chargeCard(scope, key));
  return { scope, key, options, first };
}

describe('encryption at rest', () => {
  it.each([
    ['wait', undefined],
    ['optimistic', 'optimistic'],
  ] as const)(
    'stores the response encrypted and replays it byte for byte (%s)',
    async (_, mode) => {
      const { scope, key, options, first } = await recorded(k1, mode);
      const raw = await rawResponse(scope, key);
      expect(raw).not.toBeNull();
      expect(raw).not.toContain('4111');
      expect(raw).not.toContain('Secretname');
      expect(raw?.startsWith(' ')).toBe(true);
      expect(JSON.parse(raw ?? '')).toMatchObject({ alg: 'A256GCM', kid: 'k1' });

      const again = await withIdempotency(fx.db, options, chargeCard(scope, key));
      expect(again.replayed).toBe(true);
      expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
      expect(await fx.countPayments(key)).toBe(1);
    },
  );

  it.each([
    ['wait', undefined],
    ['optimistic', 'optimistic'],
  ] as const)(
    'replays an entry whose stored text lost its leading space (a jsonb round trip) (%s)',
    async (_, mode) => {
      const { scope, key, options, first } = await recorded(k1, mode);
      await sql`update idempotency.ledger set response = response::jsonb::json
                 where scope = ${scope} and key = ${key}`.execute(fx.db);
      const raw = (await rawResponse(scope, key)) ?? '';
      expect(raw.startsWith('{')).toBe(true);
      expect(JSON.parse(raw)).toMatchObject({ alg: 'A256GCM', kid: 'k1' });

      for (const replayCache of [undefined, new ReplayCache()]) {
        const again = await withIdempotency(
          fx.db,
          { ...options, replayCache },
          chargeCard(scope, key),
        );
        expect(again.replayed).toBe(true);
        expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
      }
      expect(await fx.countPayments(key, scope)).toBe(1);
    },
  );

  it('refuses an altered entry that lost its leading space, never replaying the envelope', async () => {
    const { scope, key, options } = await recorded(k1);
    const envelope = JSON.parse((await rawResponse(scope, key)) ?? '');
    const ct: string = envelope.ct;
    const altered = { ...envelope, ct: (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1) };
    await setRawResponse(scope, key, JSON.stringify(altered));
    const call = withIdempotency(fx.db, options, async () => {
      throw new Error('fn must not run');
    });
    await expect(call).rejects.toMatchObject({ reason: 'authentication_failed' });
    expect(await fx.countPayments(key, scope)).toBe(1);
  });

  it("replays an encrypted entry found by the claim, in the caller's transaction", async () => {
    const { scope, key, options, first } = await recorded(k1);
    const again = await fx.db
      .transaction()
      .execute((trx) => withIdempotency(trx, options, chargeCard(scope, key)));
    expect(again.replayed).toBe(true);
    expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
    expect(await fx.countPayments(key)).toBe(1);
  });

  it('encrypts a response of undefined too, and replays it as undefined', async () => {
    const scope = 's';
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope, key, encryption: k1 }, async () => undefined);
    expect(await rawResponse(scope, key)).toMatch(/^ \{"alg":"A256GCM","kid":"k1"/);
    const again = await withIdempotency(fx.db, { scope, key, encryption: k1 }, async () => 'no');
    expect(again).toEqual({ response: undefined, replayed: true });
  });

  it('uses a fresh IV for every value', async () => {
    const a = await recorded(k1);
    const b = await recorded(k1);
    const ivOf = async (entry: { scope: string; key: string }) =>
      JSON.parse((await rawResponse(entry.scope, entry.key)) ?? '').iv;
    expect(await ivOf(a)).not.toBe(await ivOf(b));
  });

  it('after rotation, replays entries of the old key and encrypts new ones with the new key', async () => {
    const old = await recorded(k1);
    const replayed = await withIdempotency(
      fx.db,
      { ...old.options, encryption: k2k1 },
      chargeCard(old.scope, old.key),
    );
    expect(replayed.replayed).toBe(true);
    expect(JSON.stringify(replayed.response)).toBe(JSON.stringify(old.first.response));

    const fresh = await recorded(k2k1);
    expect(JSON.parse((await rawResponse(fresh.scope, fresh.key)) ?? '').kid).toBe('k2');
    expect(await fx.countPayments(old.key)).toBe(1);
  });

  it('keeps replaying entries stored in clear before encryption was turned on', async () => {
    const scope = 's';
    const key = uniqueKey();
    const first = await withIdempotency(fx.db, { scope, key }, chargeCard(scope, key));
    expect(await rawResponse(scope, key)).toContain('Secretname');
    const again = await withIdempotency(
      fx.db,
      { scope, key, encryption: k2k1 },
      chargeCard(scope, key),
    );
    expect(again.replayed).toBe(true);
    expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("refuses entries stored in clear with plaintext: 'refuse'", async () => {
    const scope = 's';
    const key = uniqueKey();
    await withIdempotency(fx.db, { scope, key }, chargeCard(scope, key));
    const strict = responseEncryption({ keys: [{ id: 'k1', key: key1 }], plaintext: 'refuse' });
    await expect(
      withIdempotency(fx.db, { scope, key, encryption: strict }, chargeCard(scope, key)),
    ).rejects.toMatchObject({ code: 'response_decryption', reason: 'plaintext_refused' });
    expect(await fx.countPayments(key)).toBe(1);
  });

  it("refuses a response whose fingerprint was rewritten to another request's, running nothing", async () => {
    const entry = await recorded(k1);
    const { scope } = entry;
    const otherKey = uniqueKey();
    const otherRequest = { amount: 1 };
    await withIdempotency(
      fx.db,
      { scope, key: otherKey, request: otherRequest, encryption: k1 },
      chargeCard(scope, otherKey),
    );
    // A database writer gives the entry the fingerprint of another request, hoping that request
    // replays the entry's response.
    await sql`update idempotency.ledger
                 set fingerprint = (select fingerprint from idempotency.ledger
                                     where scope = ${scope} and key = ${otherKey})
               where scope = ${scope} and key = ${entry.key}`.execute(fx.db);
    let ran = false;
    for (const onConcurrent of ['wait', 'optimistic'] as const) {
      const call = withIdempotency(
        fx.db,
        { scope, key: entry.key, request: otherRequest, encryption: k1, onConcurrent },
        async (trx) => {
          ran = true;
          return chargeCard(scope, entry.key)(trx);
        },
      );
      await expect(call).rejects.toMatchObject({
        code: 'response_decryption',
        reason: 'authentication_failed',
      });
    }
    expect(ran).toBe(false);
    expect(await fx.countPayments(entry.key, scope)).toBe(1);
    expect(await fx.countPayments(otherKey, scope)).toBe(1);
  });

  it('refuses a response moved into another schema', async () => {
    const { scope, key, options } = await recorded(k1);
    const other = 'idempotency_copy';
    await sql`drop schema if exists ${sql.id(other)} cascade`.execute(fx.db);
    await migrate({ connectionString: fx.url, schema: other });
    try {
      await sql`insert into ${sql.table(`${other}.ledger`)}
                select * from idempotency.ledger where scope = ${scope} and key = ${key}`.execute(
        fx.db,
      );
      const call = withIdempotency(fx.db, { ...options, schema: other }, async () => {
        throw new Error('fn must not run');
      });
      await expect(call).rejects.toMatchObject({ reason: 'authentication_failed' });
    } finally {
      await sql`drop schema ${sql.id(other)} cascade`.execute(fx.db);
    }
  });

  describe('answers a reused key with a 422 even when the call cannot decrypt the entry', () => {
    const withoutKey: [string, ResponseEncryption | undefined][] = [
      ['no encryption option', undefined],
      ['only an unknown key', responseEncryption({ keys: [{ id: 'k9', key: randomBytes(32) }] })],
    ];
    it.each(withoutKey)('%s', async (_, encryption) => {
      const entry = await recorded(k1);
      const reused = { ...entry.options, request: { amount: 1 }, encryption };
      const fn = async () => {
        throw new Error('fn must not run');
      };
      for (const onConcurrent of ['wait', 'optimistic'] as const) {
        const call = withIdempotency(fx.db, { ...reused, onConcurrent }, fn);
        await expect(call).rejects.toBeInstanceOf(IdempotencyKeyReusedError);
        await expect(call).rejects.toMatchObject({ status: 422 });
      }
      await fx.db.transaction().execute(async (trx) => {
        await expect(withIdempotency(trx, reused, fn)).rejects.toBeInstanceOf(
          IdempotencyKeyReusedError,
        );
      });
      expect(await fx.countPayments(entry.key, entry.scope)).toBe(1);
    });
  });

  describe('a ReplayCache', () => {
    const strict = responseEncryption({ keys: [{ id: 'k1', key: key1 }], plaintext: 'refuse' });

    it("does not serve a response stored in clear to a call with plaintext: 'refuse'", async () => {
      const scope = 's';
      const key = uniqueKey();
      const replayCache = new ReplayCache();
      const request = { amount: 4200 };
      await withIdempotency(fx.db, { scope, key, request, replayCache }, chargeCard(scope, key));
      expect(replayCache.size).toBe(1);
      const call = withIdempotency(
        fx.db,
        { scope, key, request, replayCache, encryption: strict },
        chargeCard(scope, key),
      );
      await expect(call).rejects.toMatchObject({
        code: 'response_decryption',
        reason: 'plaintext_refused',
      });
      expect(await fx.countPayments(key, scope)).toBe(1);
    });

    it("serves a response it holds from an encrypted entry to a call with plaintext: 'refuse'", async () => {
      const scope = 's';
      const key = uniqueKey();
      const replayCache = new ReplayCache();
      const options = { scope, key, request: { amount: 4200 }, replayCache, encryption: strict };
      const first = await withIdempotency(fx.db, options, chargeCard(scope, key));
      // The entry is gone from the table: only the cache can answer.
      await sql`delete from idempotency.ledger where scope = ${scope} and key = ${key}`.execute(
        fx.db,
      );
      const again = await withIdempotency(fx.db, options, chargeCard(scope, key));
      expect(again).toEqual({ response: first.response, replayed: true });
      expect(await fx.countPayments(key, scope)).toBe(1);
    });
  });

  describe('refuses to replay, with a typed error, writing nothing and running nothing', () => {
    const cases: [string, string, (entry: { scope: string; key: string }) => Promise<unknown>][] = [
      ['no encryption option', 'no_key', async () => undefined],
      ['only an unknown key', 'unknown_key', async () => undefined],
      [
        'altered ciphertext',
        'authentication_failed',
        async ({ scope, key }) => {
          const envelope = JSON.parse((await rawResponse(scope, key)) ?? '');
          const ct: string = envelope.ct;
          // Flip one character of the ciphertext (not of the tag's last, partial sextet).
          const flipped = (ct[0] === 'A' ? 'B' : 'A') + ct.slice(1);
          await setRawResponse(scope, key, ` ${JSON.stringify({ ...envelope, ct: flipped })}`);
        },
      ],
      [
        'a ciphertext moved from another key',
        'authentication_failed',
        async ({ scope, key }) => {
          const other = await recorded(k1);
          await setRawResponse(scope, key, await rawResponse(other.scope, other.key));
        },
      ],
      [
        'a ciphertext moved from another scope',
        'authentication_failed',
        async ({ scope, key }) => {
          const otherScope = 'tenant:other';
          await withIdempotency(
            fx.db,
            { scope: otherScope, key, request: { amount: 4200 }, encryption: k1 },
            chargeCard(otherScope, key),
          );
          await setRawResponse(scope, key, await rawResponse(otherScope, key));
        },
      ],
      [
        'a truncated tag',
        'authentication_failed',
        async ({ scope, key }) => {
          const envelope = JSON.parse((await rawResponse(scope, key)) ?? '');
          // Four base64url characters: the last three bytes of the tag are gone.
          const ct: string = envelope.ct.slice(0, -4);
          await setRawResponse(scope, key, ` ${JSON.stringify({ ...envelope, ct })}`);
        },
      ],
      [
        'a key id relabelled to another configured key',
        'authentication_failed',
        async ({ scope, key }) => {
          const envelope = JSON.parse((await rawResponse(scope, key)) ?? '');
          await setRawResponse(scope, key, ` ${JSON.stringify({ ...envelope, kid: 'k2' })}`);
        },
      ],
      [
        'a malformed envelope',
        'malformed',
        async ({ scope, key }) => setRawResponse(scope, key, ' {"alg":"A256GCM","kid":"k1"}'),
      ],
    ];

    it.each(cases)('%s', async (_, reason, tamper) => {
      const entry = await recorded(k1);
      await tamper(entry);
      const before = await rawResponse(entry.scope, entry.key);
      const encryption =
        reason === 'no_key'
          ? undefined
          : reason === 'unknown_key'
            ? responseEncryption({ keys: [{ id: 'k9', key: randomBytes(32) }] })
            : // k2 is configured too: a relabelled key id is then tried with the wrong key.
              k2k1;
      let ran = false;
      const cache = new ReplayCache();
      for (const onConcurrent of ['wait', 'optimistic'] as const) {
        const call = withIdempotency(
          fx.db,
          { ...entry.options, encryption, onConcurrent, replayCache: cache },
          async (trx) => {
            ran = true;
            return chargeCard(entry.scope, entry.key)(trx);
          },
        );
        await expect(call).rejects.toBeInstanceOf(ResponseDecryptionError);
        await expect(call).rejects.toMatchObject({
          code: 'response_decryption',
          status: 500,
          reason,
        });
      }
      expect(ran).toBe(false);
      expect(await fx.countPayments(entry.key, entry.scope)).toBe(1);
      expect(await fx.countEntries(entry.key, entry.scope)).toBe(1);
      expect(await rawResponse(entry.scope, entry.key)).toBe(before);
    });

    it("inside the caller's transaction too", async () => {
      const entry = await recorded(k1);
      await fx.db.transaction().execute(async (trx) => {
        const call = withIdempotency(trx, { ...entry.options, encryption: undefined }, async () => {
          throw new Error('fn must not run');
        });
        await expect(call).rejects.toMatchObject({ reason: 'no_key' });
      });
      expect(await fx.countPayments(entry.key)).toBe(1);
    });

    it('names the key id it lacks, and neither the idempotency key nor key material', async () => {
      const entry = await recorded(k2k1);
      const error = await withIdempotency(
        fx.db,
        { ...entry.options, encryption: k1 },
        async () => 0,
      )
        .then(() => undefined)
        .catch((thrown: unknown) => thrown);
      expect(error).toBeInstanceOf(ResponseDecryptionError);
      expect((error as ResponseDecryptionError).keyId).toBe('k2');
      const printed = [inspect(error, { depth: 5 }), JSON.stringify(error), String(error)];
      for (const text of printed) {
        expect(text).not.toContain(entry.key);
        expect(text).not.toContain(key1.toString('hex'));
        expect(text).not.toContain(key1.toString('base64'));
      }
    });
  });
});

describe("write: 'plaintext', the decrypt-only phase of a rolling deploy", () => {
  const readOnly = responseEncryption({ keys: [{ id: 'k1', key: key1 }], write: 'plaintext' });

  it('replays entries encrypted by instances already writing encrypted', async () => {
    const { scope, key, options, first } = await recorded(k1);
    const again = await withIdempotency(
      fx.db,
      { ...options, encryption: readOnly },
      chargeCard(scope, key),
    );
    expect(again.replayed).toBe(true);
    expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
    expect(await fx.countPayments(key, scope)).toBe(1);
  });

  it.each([
    ['wait', undefined],
    ['optimistic', 'optimistic'],
  ] as const)(
    'stores new responses in clear, readable by instances without encryption (%s)',
    async (_, mode) => {
      const { scope, key, first } = await recorded(readOnly, mode);
      const raw = (await rawResponse(scope, key)) ?? '';
      expect(raw).toContain('Secretname');
      expect(raw.startsWith(' ')).toBe(false);
      const again = await withIdempotency(
        fx.db,
        { scope, key, request: { amount: 4200 } },
        chargeCard(scope, key),
      );
      expect(again.replayed).toBe(true);
      expect(JSON.stringify(again.response)).toBe(JSON.stringify(first.response));
      expect(await fx.countPayments(key, scope)).toBe(1);
    },
  );

  it('reads, during a rotation, entries of a key listed second', async () => {
    // First deploy of a rotation: [old, new]; an instance already on [new, old] writes with new.
    const newFirst = await recorded(k2k1);
    const oldFirst = responseEncryption({
      keys: [
        { id: 'k1', key: key1 },
        { id: 'k2', key: key2 },
      ],
    });
    const again = await withIdempotency(
      fx.db,
      { ...newFirst.options, encryption: oldFirst },
      chargeCard(newFirst.scope, newFirst.key),
    );
    expect(JSON.stringify(again.response)).toBe(JSON.stringify(newFirst.first.response));
  });

  it("shows the mode, and refuses plaintext: 'refuse' with it", () => {
    expect(readOnly.write).toBe('plaintext');
    expect(k1.write).toBe('encrypted');
    expect(inspect(readOnly)).toContain("write: 'plaintext'");
    expect(JSON.stringify(readOnly)).toContain('"write":"plaintext"');
    const build = () =>
      responseEncryption({
        keys: [{ id: 'a', key: key1 }],
        write: 'plaintext',
        plaintext: 'refuse',
      });
    expect(build).toThrow(InvalidIdempotencyOptionsError);
    expect(build).toThrow("write: 'plaintext' stores responses that plaintext: 'refuse' refuses");
  });
});

describe('responseEncryption()', () => {
  const badConfigs: [string, unknown, string][] = [
    ['no keys', { keys: [] }, 'keys: must be a non-empty array'],
    ['a short key', { keys: [{ id: 'a', key: randomBytes(16) }] }, 'keys[0].key: must be 32 bytes'],
    [
      'a duplicate id',
      {
        keys: [
          { id: 'a', key: randomBytes(32) },
          { id: 'a', key: randomBytes(32) },
        ],
      },
      'keys[1].id: the same id as keys[0]',
    ],
    ['an invalid id', { keys: [{ id: 'a b', key: randomBytes(32) }] }, 'keys[0].id: must be'],
    ['a key as a string', { keys: [{ id: 'a', key: 'x'.repeat(32) }] }, 'keys[0].key: must be'],
    [
      'an unknown write mode',
      { keys: [{ id: 'a', key: randomBytes(32) }], write: 'clear' },
      "write: must be 'encrypted' or 'plaintext'",
    ],
    [
      'an unknown plaintext mode',
      { keys: [{ id: 'a', key: randomBytes(32) }], plaintext: 'yes' },
      'plaintext:',
    ],
  ];

  it.each(badConfigs)('refuses %s with a typed error', (_, options, issue) => {
    const build = () => responseEncryption(options as never);
    expect(build).toThrow(InvalidIdempotencyOptionsError);
    expect(build).toThrow(issue);
  });

  it('never shows key material in errors, util.inspect or JSON', () => {
    const material = randomBytes(32);
    const short = randomBytes(31);
    const error = (() => {
      try {
        responseEncryption({ keys: [{ id: 'a', key: short }] });
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(inspect(error, { depth: 10 })).not.toContain(short.toString('hex').slice(0, 16));
    const encryption = responseEncryption({ keys: [{ id: 'a', key: material }] });
    for (const printed of [
      inspect(encryption, { depth: 10, showHidden: true }),
      JSON.stringify(encryption),
      String(encryption),
    ]) {
      expect(printed).not.toContain(material.toString('hex').slice(0, 16));
      expect(printed).not.toContain(material.toString('base64').slice(0, 16));
    }
    expect(inspect(encryption)).toContain('"a"');
  });

  it('copies the key: zeroing the Buffer afterwards changes nothing', async () => {
    const material = randomBytes(32);
    const encryption = responseEncryption({ keys: [{ id: 'z', key: material }] });
    const scope = 's';
    const key = uniqueKey();
    const first = await withIdempotency(fx.db, { scope, key, encryption }, async () => ({ n: 1 }));
    material.fill(0);
    const again = await withIdempotency(fx.db, { scope, key, encryption }, async () => ({ n: 2 }));
    expect(again).toEqual({ response: first.response, replayed: true });
  });

  it('seals values of a kind another module names, and names it in the error', () => {
    const binding = { kind: 'invoice_pdf', schema: 'billing', scope: 's', key: 'k' };
    const stored = sealStoredJson('{"total":1}', k1, binding) ?? '';
    expect(openStoredJson(stored, k1, binding)).toBe('{"total":1}');
    const read = () => openStoredJson(stored, k1, { ...binding, kind: 'invoice_xml' });
    expect(read).toThrow(ResponseDecryptionError);
    expect(read).toThrow(/^A stored value for this idempotency key failed authentication/);
  });

  it('is refused as the encryption option when it is not built by responseEncryption()', async () => {
    await expect(
      withIdempotency(
        fx.db,
        { scope: 's', key: uniqueKey(), encryption: { keyIds: ['a'] } as never },
        async () => 1,
      ),
    ).rejects.toBeInstanceOf(InvalidIdempotencyOptionsError);
  });
});
