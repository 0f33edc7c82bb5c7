// Drives Mattermost's official JavaScript client (Client4 from @mattermost/client) against the
// token-service REST shim, through the token, session, rotation and command flows. Configured by
// environment: TS_URL (http://127.0.0.1:port), TS_ADMIN_TOKEN, TS_USER_TOKEN, TS_USER_ID,
// TS_TEAM_ID, and TS_TOKEN_PREFIX when the server mints checksummed tokens (`[token_format]`;
// unset: Mattermost's 26-character format). Prints one line per check; exits non-zero on the
// first failure.
'use strict';

const assert = require('node:assert/strict');
const {Client4, ClientError} = require('@mattermost/client');

// A secret the server just minted, of kind 'p' (personal access token), 's' (session) or 'c'
// (slash command), in the format the server is configured for.
function assertMinted(token, kind) {
    const prefix = process.env.TS_TOKEN_PREFIX;
    if (prefix) {
        assert.match(token, new RegExp(`^${prefix}${kind}_[0-9A-Za-z]{36}$`));
    } else {
        assert.match(token, /^[0-9a-z]{26}$/);
    }
}

function client(token) {
    const c = new Client4();
    c.setUrl(process.env.TS_URL);
    c.setToken(token);
    c.setIncludeCookies(false);
    return c;
}

async function expectStatus(promise, status, id) {
    try {
        await promise;
    } catch (err) {
        assert.ok(err instanceof ClientError, `expected a ClientError, got ${err}`);
        assert.equal(err.status_code, status, `status of ${err.url}: ${err.message}`);
        if (id) {
            assert.equal(err.server_error_id, id);
        }
        return;
    }
    assert.fail(`expected HTTP ${status}`);
}

// Rotates a token as Mattermost's clients do: Client4's rotateUserAccessToken where this
// version has it, else the same request through its doFetch.
function rotate(c, tokenId, expiresAt) {
    if (typeof c.rotateUserAccessToken === 'function') {
        return c.rotateUserAccessToken(tokenId, expiresAt);
    }
    return c.doFetch(`${c.getUsersRoute()}/tokens/rotate`, {
        method: 'post',
        body: JSON.stringify({token_id: tokenId, expires_at: expiresAt}),
    });
}

async function main() {
    const admin = client(process.env.TS_ADMIN_TOKEN);
    const user = client(process.env.TS_USER_TOKEN);
    const userId = process.env.TS_USER_ID;

    // GetMe with a session token.
    const me = await user.getMe();
    assert.equal(me.id, userId);
    console.log('getMe ok');

    // Token flow: create, use, list, get, disable, enable, revoke.
    const created = await user.createUserAccessToken(userId, 'from Client4');
    assert.equal(created.user_id, userId);
    assert.equal(created.description, 'from Client4');
    assert.equal(created.is_active, true);
    assertMinted(created.token, 'p');
    const pat = client(created.token);
    assert.equal((await pat.getMe()).id, userId);
    const listed = await user.getUserAccessTokensForUser(userId, 0, 100);
    assert.equal(listed.length, 1);
    assert.equal(listed[0].token, undefined, 'reads never carry the secret');
    const one = await user.getUserAccessToken(created.id);
    assert.equal(one.id, created.id);
    const all = await admin.getUserAccessTokens(0, 200);
    assert.ok(all.some((t) => t.id === created.id));
    await user.disableUserAccessToken(created.id);
    await expectStatus(pat.getMe(), 401, 'api.context.session_expired.app_error');
    await user.enableUserAccessToken(created.id);
    assert.equal((await pat.getMe()).id, userId);
    await user.revokeUserAccessToken(created.id);
    await expectStatus(pat.getMe(), 401, 'api.context.session_expired.app_error');
    await expectStatus(user.getUserAccessToken(created.id), 404, 'app.user_access_token.get_by_user.app_error');
    console.log('token flow ok');

    // Permission errors come back as Mattermost errors.
    await expectStatus(user.getUserAccessTokens(0, 10), 403, 'api.context.permissions.app_error');

    // Session flow: a second token's minted session shows up, can be revoked, and revoking all
    // logs the user out while the token survives.
    const second = await user.createUserAccessToken(userId, 'sessions');
    const secondClient = client(second.token);
    await secondClient.getMe();
    const sessions = await user.getSessions(userId);
    const minted = sessions.find((s) => s.props.user_access_token_id === second.id);
    assert.ok(minted, 'the PAT session is listed');
    assert.equal(minted.token, '', 'session tokens are blanked');
    await user.revokeSession(userId, minted.id);
    assert.equal((await secondClient.getMe()).id, userId, 'the PAT mints a new session');
    await admin.revokeAllSessionsForUser(userId);
    await expectStatus(user.getMe(), 401, 'api.context.session_expired.app_error');
    assert.equal((await secondClient.getMe()).id, userId, 'PATs survive revoke-all');
    console.log('session flow ok');

    // User directory and logout: getUser, getUserByUsername (sanitized), logout.
    const seen = await secondClient.getUser(userId);
    assert.equal(seen.id, userId);
    const byName = await secondClient.getUserByUsername(seen.username);
    assert.equal(byName.id, userId);
    await expectStatus(secondClient.getUser('abc'), 400, 'api.context.invalid_url_param.app_error');
    const third = await secondClient.createUserAccessToken(userId, 'logout');
    const thirdClient = client(third.token);
    await thirdClient.getMe();
    await thirdClient.logout();
    const left = await secondClient.getSessions(userId);
    assert.ok(!left.some((s) => s.props.user_access_token_id === third.id), 'logout ended the PAT session');
    // Client4.logout() forgets its token; a new client with the same PAT still works.
    assert.equal((await client(third.token).getMe()).id, userId, 'the PAT outlives its session');
    console.log('user directory and logout ok');

    // Rotation (POST /users/tokens/rotate, which Mattermost's Go client and webapp call): same
    // id, a new secret shown once, the old secret refused at once. Client4 11.9 has no
    // rotateUserAccessToken, so the path is called with the client's own doFetch.
    const fourth = await secondClient.createUserAccessToken(userId, 'rotation');
    const fourthOld = client(fourth.token);
    assert.equal((await fourthOld.getMe()).id, userId);
    const rotated = await rotate(secondClient, fourth.id, 0);
    assert.equal(rotated.id, fourth.id);
    assert.equal(rotated.user_id, userId);
    assert.equal(rotated.description, 'rotation');
    assert.equal(rotated.is_active, true);
    assert.equal(rotated.expires_at, 0);
    assertMinted(rotated.token, 'p');
    assert.notEqual(rotated.token, fourth.token);
    assert.equal((await client(rotated.token).getMe()).id, userId);
    await expectStatus(fourthOld.getMe(), 401, 'api.context.session_expired.app_error');
    // Presenting the replaced secret was reuse: by default the token is revoked too.
    const deadline = Date.now() + 5000;
    for (;;) {
        try {
            await client(rotated.token).getMe();
        } catch (err) {
            assert.equal(err.status_code, 401);
            break;
        }
        assert.ok(Date.now() < deadline, 'reuse revoked the rotated token');
        await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await expectStatus(secondClient.getUserAccessToken(fourth.id), 404, 'app.user_access_token.get_by_user.app_error');
    // Mattermost's refusals: a disabled token, an empty token_id.
    const fifth = await secondClient.createUserAccessToken(userId, 'disabled');
    await secondClient.disableUserAccessToken(fifth.id);
    await expectStatus(rotate(secondClient, fifth.id, 0), 400, 'api.user.rotate_user_access_token.disabled_token.app_error');
    await expectStatus(rotate(secondClient, '', 0), 400, 'api.context.invalid_body_param.app_error');
    console.log('rotation ok');

    // Command flow: create, regenerate, and the 404 that hides it from others.
    const command = await admin.addCommand({
        team_id: process.env.TS_TEAM_ID,
        trigger: 'deploy',
        method: 'P',
        url: 'https://hooks.example.com/deploy',
        display_name: 'Deploy',
    });
    assert.equal(command.trigger, 'deploy');
    assertMinted(command.token, 'c');
    const regenerated = await admin.regenCommandToken(command.id);
    assert.deepEqual(Object.keys(regenerated), ['token']);
    assert.notEqual(regenerated.token, command.token);
    await expectStatus(secondClient.regenCommandToken(command.id), 404, 'store.sql_command.save.get.app_error');
    console.log('command flow ok');

    // Revoke sessions of every user (the admin's own included).
    await admin.revokeSessionsForAllUsers();
    await expectStatus(admin.getMe(), 401, 'api.context.session_expired.app_error');
    console.log('ALL OK');
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
