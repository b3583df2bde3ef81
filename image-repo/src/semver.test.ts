import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '@upfleet/core';
import { InvalidVersionError } from './errors.ts';
import { checkSemver, semverProblem } from './semver.ts';

describe('checkSemver', () => {
  it('accepts SemVer 2.0.0 versions, pre-releases and build metadata', () => {
    for (const v of ['0.0.0', '1.2.3', '10.20.30', '1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-0.3.7', '1.0.0-x.7.z.92', '1.0.0-x-y-z.--',
      '1.0.0+20130313144700', '1.0.0-beta+exp.sha.5114f85', '1.0.0+21AF26D3----117B344092BD', '1.0.0+001', '1.0.0-rc.1+build.1']) {
      assert.equal(semverProblem(v), undefined, v);
      assert.equal(checkSemver(v), v);
    }
  });

  describe('when the value is not a semantic version', () => {
    const bad: Array<[string, RegExp]> = [
      ['banana', /MAJOR\.MINOR\.PATCH/],
      ['', /MAJOR\.MINOR\.PATCH/],
      ['1', /MAJOR\.MINOR\.PATCH/],
      ['1.2', /MAJOR\.MINOR\.PATCH/],
      ['1.2.3.4', /MAJOR\.MINOR\.PATCH/],
      ['v1.2.3', /"v1" is not a number/],
      ['01.2.3', /"01" is not a number without leading zeros/],
      ['1.02.3', /"02"/],
      [' 1.2.3', /" 1"/],
      ['1.2.3 ', /"3 "/],
      ['1.2.-3', /""/],
      ['1.2.3-', /pre-release identifier ""/],
      ['1.2.3-a..b', /pre-release identifier ""/],
      ['1.2.3-01', /leading zero/],
      ['1.2.3-a_b', /pre-release identifier "a_b"/],
      ['1.2.3+', /build identifier ""/],
      ['1.2.3+a+b', /build identifier "a\+b"/],
      ['99999999999999999999.0.0', /too large/],
      [`1.0.0-${'a'.repeat(300)}`, /longer than 256/],
    ];
    for (const [value, reason] of bad) {
      it(`rejects ${JSON.stringify(value.slice(0, 30))}`, () => {
        assert.throws(() => checkSemver(value), (e: unknown) => {
          assert.ok(e instanceof InvalidVersionError && e instanceof UsageError);
          assert.equal(e.value, value);
          assert.match(e.reason, reason);
          return true;
        });
      });
    }
  });
});
