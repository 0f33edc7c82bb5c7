// Loads proto/ with @grpc/proto-loader and runs the token flow over @grpc/grpc-js: create,
// introspect, revoke, introspect again. Environment: TS_GRPC (host:port), TS_ADMIN_TOKEN,
// TS_USER_ID, TS_PROTO_DIR.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const definition = protoLoader.loadSync(
    path.join(process.env.TS_PROTO_DIR, 'token_service/v1/token_service.proto'),
    {includeDirs: [process.env.TS_PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true},
);
const pkg = grpc.loadPackageDefinition(definition).token_service.v1;
const client = new pkg.TokenService(process.env.TS_GRPC, grpc.credentials.createInsecure());

function call(method, request) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${process.env.TS_ADMIN_TOKEN}`);
    return new Promise((resolve, reject) => {
        client[method](request, metadata, (err, response) => (err ? reject(err) : resolve(response)));
    });
}

async function main() {
    const created = await call('CreateUserAccessToken', {user_id: process.env.TS_USER_ID, description: 'from grpc-js'});
    assert.equal(created.token.length, 26);
    const id = created.user_access_token.id;
    let answer = await call('IntrospectToken', {token: created.token});
    assert.equal(answer.active, true);
    assert.equal(answer.kind, 'TOKEN_KIND_PERSONAL_ACCESS_TOKEN');
    assert.equal(answer.token_id, id);
    await call('RevokeUserAccessToken', {token_id: id});
    answer = await call('IntrospectToken', {token: created.token});
    assert.equal(answer.active, false);
    try {
        await call('RevokeUserAccessToken', {token_id: id});
        assert.fail('a second revoke must fail');
    } catch (err) {
        assert.equal(err.code, grpc.status.NOT_FOUND);
    }
    console.log('ALL OK');
}

main().then(() => client.close()).catch((err) => {
    console.error(err);
    process.exit(1);
});
