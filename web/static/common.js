// Small helpers the pages share: hex, sizes, and the person-facing text for a failed call.
import { t } from './i18n.js';
import { CODES } from './grpcweb.js';

export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export function humanSize(bytes) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  for (; bytes >= 1024 && i < units.length - 1; i++) bytes /= 1024;
  return `${bytes.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function errorMessage(e) {
  switch (e.code) {
    case CODES.PERMISSION_DENIED: return t('errWrongPin');
    case CODES.NOT_FOUND: return t('errNoCase');
    case CODES.INVALID_ARGUMENT: return t('errRefused', { detail: e.message });
    case CODES.RESOURCE_EXHAUSTED: return t('errBusy');
    default: return t('errOffline');
  }
}
