/**
 * The one module that talks to the nbdeploy server extension (`{baseUrl}nbdeploy/...`).
 * Types come from `models.ts`, generated from the Python REST models.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  AliasMove,
  BundleInfo,
  Candidates,
  ErrorBody,
  Job,
  JobRequest,
  LiveStatus,
  LogChunk,
  Parameters,
  Performance,
  Readiness,
  ReleaseRequest,
  Releases
} from './models';

/** An error answered by the server extension (its JSON body), or a network failure. */
export class NbdeployRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly hint: string | null = null
  ) {
    super(message);
  }
}

/** The answer's text; a failure (its JSON error body, or the network's) as an NbdeployRequestError. */
async function requestText(
  endpoint: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<string> {
  const settings = ServerConnection.makeSettings();
  const qs = new URLSearchParams(query).toString();
  const url =
    URLExt.join(settings.baseUrl, 'nbdeploy', endpoint) + (qs ? `?${qs}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new NbdeployRequestError(`cannot reach the server: ${error}`, 0);
  }
  const text = await response.text();
  if (!response.ok) {
    let err: Partial<ErrorBody> = {};
    try {
      err = (text ? JSON.parse(text) : {}) as Partial<ErrorBody>;
    } catch {
      err = {};
    }
    throw new NbdeployRequestError(
      err.message || `${response.status} ${response.statusText}`,
      response.status,
      err.hint ?? null
    );
  }
  return text;
}

async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const text = await requestText(endpoint, init, query);
  try {
    return (text ? JSON.parse(text) : null) as T;
  } catch {
    return null as T;
  }
}

export function getReadiness(path: string): Promise<Readiness> {
  return requestAPI<Readiness>('readiness', {}, { path });
}

export function listBundles(path = ''): Promise<BundleInfo[]> {
  return requestAPI<BundleInfo[]>('bundles', {}, path ? { path } : {});
}

export function startJob(request: JobRequest): Promise<Job> {
  return requestAPI<Job>('jobs', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

export function listJobs(): Promise<Job[]> {
  return requestAPI<Job[]>('jobs');
}

export function getJob(id: string): Promise<Job> {
  return requestAPI<Job>(`jobs/${id}`);
}

export function stopJob(id: string): Promise<Job> {
  return requestAPI<Job>(`jobs/${id}`, { method: 'DELETE' });
}

export function getLog(id: string, offset: number): Promise<LogChunk> {
  return requestAPI<LogChunk>(`jobs/${id}/log`, {}, { offset: String(offset) });
}

export function getReleases(path: string): Promise<Releases> {
  return requestAPI<Releases>('releases', {}, { path });
}

export function moveAlias(request: ReleaseRequest): Promise<AliasMove> {
  return requestAPI<AliasMove>('releases', {
    method: 'POST',
    body: JSON.stringify(request)
  });
}

export function getParameters(path: string): Promise<Parameters> {
  return requestAPI<Parameters>('parameters', {}, { path });
}

export function getCandidates(path: string): Promise<Candidates> {
  return requestAPI<Candidates>('candidates', {}, { path });
}

export function getLive(id: string): Promise<LiveStatus> {
  return requestAPI<LiveStatus>(`jobs/${id}/live`);
}

export function getPerformance(id: string): Promise<Performance> {
  return requestAPI<Performance>(`jobs/${id}/performance`);
}

/** The serve job's drift report: one self-contained HTML page (inline styles and SVG, no scripts). */
export function getDriftReport(id: string): Promise<string> {
  return requestText(`jobs/${id}/drift`);
}
