import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkEcuReport, EcuReportMismatchError, signEcuReport, parseEcuReport, verifyEcuReport, type EcuVersionReport } from './ecu-report.ts';
import { canonicalManifest, signVehicleManifest, parseVehicleManifest, verifyVehicleManifest, type VehicleManifest } from './vehicle-manifest.ts';
import { BadDocumentSignatureError } from './signed-document.ts';
import { Ed25519Signer } from '../keys.ts';
import { canonicalize } from '../canonical-json.ts';
import { fromUtf8 } from '../bytes.ts';
import { MalformedMetadataError } from '../errors.ts';

const ecuKey = Ed25519Signer.generate();
const primaryKey = Ed25519Signer.generate();

const report: EcuVersionReport = {
  ecuSerial: 'ecu-1',
  hardwareId: 'ecu-brake',
  installedImage: { filename: 'fw.bin', length: 12, hashes: { sha256: 'ab' } },
  releaseCounter: 3,
  nonce: 'n-42',
  attacksDetected: '',
  latestVerifiedTime: '2030-01-01T00:00:00Z',
  timestamp: '2030-01-02T03:04:05.678Z',
};

/** Through the wire: canonical bytes, then JSON.parse. */
const wire = (doc: unknown): unknown => JSON.parse(fromUtf8(canonicalize(doc)));

describe('ECU version report', () => {
  it('signs, parses from the wire and verifies against the ECU key', () => {
    const parsed = parseEcuReport(wire(signEcuReport(report, ecuKey)));
    assert.deepEqual(parsed.signed, report);
    verifyEcuReport(parsed, ecuKey.key);
  });

  describe('when signed by another key', () => {
    it('throws BadDocumentSignatureError naming the expected key', () => {
      const parsed = parseEcuReport(wire(signEcuReport(report, primaryKey)));
      assert.throws(() => verifyEcuReport(parsed, ecuKey.key), (e: unknown) => e instanceof BadDocumentSignatureError && e.keyid === ecuKey.keyid);
    });
  });

  describe('when a field was changed after signing (replayed nonce)', () => {
    it('throws BadDocumentSignatureError', () => {
      const signed = wire(signEcuReport(report, ecuKey)) as { signed: EcuVersionReport };
      signed.signed.nonce = 'n-43';
      assert.throws(() => verifyEcuReport(parseEcuReport(signed), ecuKey.key), BadDocumentSignatureError);
    });
  });

  describe('when a field is missing or unknown', () => {
    it('throws MalformedMetadataError naming it', () => {
      const missing = wire(signEcuReport(report, ecuKey)) as { signed: Record<string, unknown> };
      delete missing.signed.nonce;
      assert.throws(() => parseEcuReport(missing), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'ecuReport.signed.nonce');
      const extra = wire(signEcuReport(report, ecuKey)) as { signed: Record<string, unknown> };
      extra.signed.extra = 1;
      assert.throws(() => parseEcuReport(extra), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'ecuReport.signed');
    });
  });

  describe('when its timestamp is not a UTC time', () => {
    for (const bad of ['2030-01-02', '2030-01-02T03:04:05+01:00', '2030-13-02T03:04:05Z', 17]) {
      it(`refuses ${JSON.stringify(bad)} with MalformedMetadataError`, () => {
        const doc = wire(signEcuReport(report, ecuKey)) as { signed: Record<string, unknown> };
        doc.signed.timestamp = bad;
        assert.throws(() => parseEcuReport(doc), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'ecuReport.signed.timestamp');
      });
    }
  });
});

describe('checkEcuReport (the primary, on each report it collects)', () => {
  const signed = signEcuReport(report, ecuKey);

  it('returns the report the primary asked for', () => {
    assert.equal(checkEcuReport(signed, { ecuSerial: 'ecu-1', nonce: 'n-42' }), signed);
  });

  describe('when another ECU answers', () => {
    it('throws EcuReportMismatchError with field ecuSerial', () => {
      assert.throws(() => checkEcuReport(signed, { ecuSerial: 'ecu-2', nonce: 'n-42' }), (e: unknown) =>
        e instanceof EcuReportMismatchError && e.code === 'ECU_REPORT_MISMATCH' && e.ecuSerial === 'ecu-2' && e.field === 'ecuSerial' && e.expected === 'ecu-2' && e.actual === 'ecu-1');
    });
  });

  describe('when the report carries another nonce (an old report)', () => {
    it('throws EcuReportMismatchError with field nonce', () => {
      assert.throws(() => checkEcuReport(signed, { ecuSerial: 'ecu-1', nonce: 'n-43' }), (e: unknown) =>
        e instanceof EcuReportMismatchError && e.ecuSerial === 'ecu-1' && e.field === 'nonce' && e.expected === 'n-43' && e.actual === 'n-42');
    });
  });
});

describe('vehicle version manifest', () => {
  const manifest = (): VehicleManifest => ({
    deviceId: 'vehicle-1',
    primaryEcuSerial: 'primary',
    ecuVersionReports: { 'ecu-1': signEcuReport(report, ecuKey) },
    installationResult: {
      directorTargetsVersion: 4,
      success: true,
      code: 'OK',
      description: 'installed',
      ecus: [{ ecuSerial: 'ecu-1', success: true, code: 'OK', description: 'ok', filename: 'fw.bin' }],
    },
    counter: 9,
    timestamp: '2030-01-01T00:00:00Z',
  });

  it('signs, parses from the wire and verifies; each report verifies against its ECU key', () => {
    const parsed = parseVehicleManifest(wire(signVehicleManifest(manifest(), primaryKey)));
    // Serials come from outside: the reports are kept in a null-prototype map.
    assert.equal(Object.getPrototypeOf(parsed.signed.ecuVersionReports), null);
    assert.deepEqual({ ...parsed.signed, ecuVersionReports: { ...parsed.signed.ecuVersionReports } }, manifest());
    verifyVehicleManifest(parsed, primaryKey.key);
    verifyEcuReport(parsed.signed.ecuVersionReports['ecu-1']!, ecuKey.key);
  });

  describe('when signed by another key', () => {
    it('throws BadDocumentSignatureError', () => {
      const parsed = parseVehicleManifest(wire(signVehicleManifest(manifest(), ecuKey)));
      assert.throws(() => verifyVehicleManifest(parsed, primaryKey.key), BadDocumentSignatureError);
    });
  });

  describe('when a report is filed under another ECU serial', () => {
    it('throws MalformedMetadataError', () => {
      const m = manifest();
      m.ecuVersionReports = { 'ecu-9': signEcuReport(report, ecuKey) };
      assert.throws(() => parseVehicleManifest(wire(signVehicleManifest(m, primaryKey))), (e: unknown) => e instanceof MalformedMetadataError && e.path === 'manifest.signed.ecuVersionReports.ecu-9');
    });
  });

  describe('when the counter was rolled back after signing (replay)', () => {
    it('throws BadDocumentSignatureError', () => {
      const doc = wire(signVehicleManifest(manifest(), primaryKey)) as { signed: VehicleManifest };
      doc.signed.counter = 8;
      assert.throws(() => verifyVehicleManifest(parseVehicleManifest(doc), primaryKey.key), BadDocumentSignatureError);
    });
  });

  describe('canonicalManifest (one encoding for the manifest and its reports)', () => {
    // Serials, hardware IDs and nonces where code-point order differs from UTF-16 order, with escapes.
    const odd = ['😀-ecu', '\uE000-ecu', 'a"b\\c', 'é\u0001'];
    const oddManifest = (): VehicleManifest => ({
      ...manifest(),
      ecuVersionReports: Object.fromEntries(odd.map((serial, i) => [serial, signEcuReport({ ...report, ecuSerial: serial, hardwareId: `hw-${serial}`, nonce: `n"${i}😀` }, ecuKey)])),
    });

    // Canonical JSON keeps control characters raw (not JSON): these travel as a device sends them, JSON.
    const json = (doc: unknown): unknown => JSON.parse(JSON.stringify(doc));

    it('gives exactly the plain canonical bytes of the manifest and of each report', () => {
      const parsed = parseVehicleManifest(json(signVehicleManifest(oddManifest(), primaryKey)));
      const known = canonicalManifest(parsed);
      assert.deepEqual(known.get(parsed.signed), canonicalize(parsed.signed));
      for (const serial of odd) {
        const r = parsed.signed.ecuVersionReports[serial]!;
        assert.deepEqual(known.get(r.signed), canonicalize(r.signed), serial);
      }
      assert.equal(known.size, odd.length + 1);
      verifyVehicleManifest(parsed, primaryKey.key, known);
      for (const serial of odd) verifyEcuReport(parsed.signed.ecuVersionReports[serial]!, ecuKey.key, known);
    });

    it('still refuses a report changed after signing, and a manifest signed by another key', () => {
      const doc = json(signVehicleManifest(oddManifest(), primaryKey)) as { signed: VehicleManifest };
      doc.signed.ecuVersionReports[odd[0]!]!.signed.releaseCounter = 0;
      const parsed = parseVehicleManifest(doc);
      const known = canonicalManifest(parsed);
      assert.throws(() => verifyEcuReport(parsed.signed.ecuVersionReports[odd[0]!]!, ecuKey.key, known), BadDocumentSignatureError);
      assert.throws(() => verifyVehicleManifest(parsed, primaryKey.key, known), BadDocumentSignatureError, 'the manifest signed the original report');
      const other = parseVehicleManifest(json(signVehicleManifest(oddManifest(), ecuKey)));
      assert.throws(() => verifyVehicleManifest(other, primaryKey.key, canonicalManifest(other)), BadDocumentSignatureError);
    });
  });
});
