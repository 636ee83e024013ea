import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The load tester end to end: `loadtest/cli.ts --spawn` starts a real mesh (signaling + 3 relays),
 * a werift broadcaster and 10 werift viewers in a child process, for 10 s, on 127.0.0.1.
 */
function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'loadtest/cli.ts', ...args], { cwd: process.cwd(), env: { ...process.env, CANOPY_LOG: 'warn' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('npm run loadtest -- --spawn', () => {
  it('10 viewers for 10 s: every viewer connects, receives media and reports finite latency', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'canopy-loadtest-'));
    try {
      const { code, stdout, stderr } = await runCli(['--spawn', '--viewers', '10', '--duration', '10s', '--ramp', '2s', '--full-every', '5', '--report', dir], 80_000);
      expect(code, stderr.slice(-2000)).toBe(0);
      const lines = stdout.trim().split('\n');
      const summary = JSON.parse(lines[lines.length - 1]!);
      expect(Object.keys(summary)).toEqual(['bench', 'scenario', 'viewers', 'connected', 'ttff_p50_ms', 'ttff_p95_ms', 'latency_p50_ms', 'latency_p95_ms', 'loss_pct', 'freezes']);
      expect(summary).toMatchObject({ bench: 'loadtest', scenario: 'steady', viewers: 10, connected: 10 });
      expect(Number.isFinite(summary.latency_p50_ms)).toBe(true);
      expect(Number.isFinite(summary.ttff_p95_ms)).toBe(true);
      const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
      expect(report.viewers).toHaveLength(10);
      for (const v of report.viewers) {
        expect(v.connected, v.id).toBe(true);
        expect(v.packets, v.id).toBeGreaterThan(100);
        expect(v.framesComplete, v.id).toBeGreaterThan(30);
        expect(Number.isFinite(v.latencyP50Ms), v.id).toBe(true);
        expect(v.ttffMs, v.id).not.toBeNull();
      }
      // The decrypting sample (1 in 5) verified real payloads against the shipped clip.
      expect(report.totals.frames_verified).toBeGreaterThan(0);
      expect(report.totals.frames_corrupt).toBe(0);
      expect(report.totals.audio_corrupt).toBe(0);
      const page = readFileSync(join(dir, 'report.html'), 'utf8');
      expect(page).toContain('<svg');
      expect(page).not.toMatch(/<script|<link|src="http/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
