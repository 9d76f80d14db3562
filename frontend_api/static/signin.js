// Signing in through Keycloak's own page (OIDC code flow with PKCE S256
// through oidc-client-ts, loaded by the page as the global `oidc`; tokens kept
// in sessionStorage). One module for the trader client (/) and the operations
// dashboard (/ops): only the path Keycloak returns to differs.

export async function signIn(returnPath) {
  const config = await (await fetch("/app/config.json")).json();
  const auth = new oidc.UserManager({
    authority: config.authority,
    client_id: config.client_id,
    redirect_uri: `${location.origin}${returnPath}`,
    post_logout_redirect_uri: `${location.origin}${returnPath}`,
    response_type: "code",
    scope: "openid",
    automaticSilentRenew: true,
    userStore: new oidc.WebStorageStateStore({ store: window.sessionStorage }),
  });

  // The signed-in user (finishing a sign-in Keycloak just returned from), or
  // null when nobody is signed in or the session expired.
  async function signedInUser() {
    const params = new URLSearchParams(location.search);
    if (params.has("code") && params.has("state")) {
      try {
        await auth.signinRedirectCallback();
      } finally {
        history.replaceState(null, "", returnPath);
      }
    }
    const user = await auth.getUser();
    return user && !user.expired ? user : null;
  }

  return { auth, signedInUser };
}
