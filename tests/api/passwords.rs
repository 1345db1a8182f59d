//! New-password rules: not a common password (dressed up or not), not
//! containing the username.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

both_backends! {
    async fn user_add_and_passwd_refuse_dressed_up_common_passwords_and_the_name(backend: Backend) {
        let app = spawn_app(backend).await;
        let add = |name: &str, password: &str| {
            app.cli(&["user", "add", name, "--password-stdin"], &format!("{password}\n"))
        };

        assert_fails_with(&add("bob", "Password123!"), "too common");
        assert_fails_with(&add("bob", "Welcome123!"), "too common");
        assert_fails_with(&add("carol", "Carol-likes-plinths"), "must not contain the username");
        let passwd = app.cli(&["user", "passwd", TEST_USER, "--password-stdin"], "Summer2024!\n");
        assert_fails_with(&passwd, "too common");

        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("bob"));
        assert!(!stdout(&app.cli(&["user", "list"], "")).contains("carol"));
        assert_eq!(app.login(TEST_USER, TEST_PASSWORD).await.status(), StatusCode::OK);
    }

    async fn a_password_change_may_not_contain_the_username(backend: Backend) {
        let app = spawn_app(backend).await;
        app.login_test_user().await;

        let change = app
            .post_json(
                "/account/password",
                &json!({"current_password": TEST_PASSWORD, "new_password": "TEST_USER and more"}),
            )
            .await;

        assert_eq!(change.status(), StatusCode::BAD_REQUEST);
        assert_eq!(json_body(change).await["message"], "Password must not contain the username.");
    }
}
