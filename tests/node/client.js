// An independent hashmatch client in Node.js, built from the .proto files alone (no generated
// code, no Python), so the API is proven usable from a second language. It submits a case, sends
// one PDQ batch on MatchStream as a platform, and prints what came back as one JSON object.
//
// Usage: node client.js --target 127.0.0.1:PORT --proto-root DIR --include DIR
//          --api-key KEY --submit HEX[,HEX...] --query HEX[,HEX...] [--threshold N]
// HEX is a 64-digit PDQ hash. --include is the root holding google/rpc/status.proto.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`expected --name value pairs, got ${JSON.stringify(argv.slice(i))}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ['target', 'proto-root', 'include', 'api-key', 'submit', 'query']) {
    if (args[name] === undefined) throw new Error(`missing --${name}`);
  }
  return args;
}

function hashBytes(hex) {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new Error(`PDQ hash must be 64 hex digits: ${hex}`);
  return Buffer.from(hex, 'hex');
}

function loadApi(protoRoot, include) {
  const definition = protoLoader.loadSync('hashmatch/v1/hashmatch.proto', {
    includeDirs: [protoRoot, include],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).hashmatch.v1;
}

function submitCase(api, target, hashes) {
  const cases = new api.Cases(target, grpc.credentials.createInsecure());
  const media = hashes.map((pdq) => ({ image: { pdq, quality: 100 } }));
  return new Promise((resolve, reject) => {
    cases.SubmitCase({ media }, (err, reply) => {
      cases.close();
      if (err) reject(err); else resolve(reply);
    });
  });
}

function matchOnStream(api, target, apiKey, queries, threshold) {
  const matching = new api.Matching(target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('x-api-key', apiKey);
  const call = matching.MatchStream(metadata);
  const answers = [];
  return new Promise((resolve, reject) => {
    call.on('data', (answer) => answers.push(answer));
    call.on('error', (err) => { matching.close(); reject(err); });
    call.on('end', () => { matching.close(); resolve(answers); });
    call.write({
      sequence: 7,
      signal_type: 'SIGNAL_TYPE_PDQ',
      hashes: Buffer.concat(queries),
      threshold,
    });
    call.end();
  });
}

function plainAnswer(answer) {
  return {
    sequence: Number(answer.sequence),
    list_sequence: Number(answer.list_sequence),
    error: answer.error ? { code: answer.error.code, message: answer.error.message } : null,
    matches: answer.matches.map((m) => ({
      position: m.position,
      entry_id: m.entry_id,  // a decimal string: uint64 does not fit a JS number
      distance: m.distance,
      signal_type: m.signal_type,
    })),
  };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const api = loadApi(path.resolve(args['proto-root']), path.resolve(args.include));
  const submitted = await submitCase(api, args.target, args.submit.split(',').map(hashBytes));
  const answers = await matchOnStream(api, args.target, args['api-key'],
    args.query.split(',').map(hashBytes), Number(args.threshold || 31));
  process.stdout.write(JSON.stringify({
    case_id: submitted.case_id,
    entry_ids: submitted.entry_ids,
    answers: answers.map(plainAnswer),
  }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`node client failed: ${err.code !== undefined ? `code ${err.code}: ` : ''}${err.message}\n`);
  process.exit(1);
});
