//! Usernames compared folded (NFKC + case folding): look-alike spellings are one
//! account for uniqueness, login and throttling; invisible characters are refused.

use actix_web::ResponseError as _;
use latchkey::account::ops;
use latchkey::audit::{Entry, Event};
use latchkey::error::AppError;
use latchkey::users::NewUser;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const ALICE_PASSWORD: &str = "plinth-oboe-marsupial";

both_backends! {
    async fn a_name_that_folds_like_a_taken_one_already_exists(backend: Backend) {
        let app = spawn_app(backend).await;
        let added = app.cli(&["user", "add", "Alice", "--password-stdin"], &format!("{ALICE_PASSWORD}\n"));
        assert!(added.status.success(), "{}", output_text(&added));

        let fullwidth = app.cli(&["user", "add", "ａｌｉｃｅ", "--password-stdin"], "quartz-lantern-fjord\n");
        let upper = NewUser { username: "ALICE", password_hash: "not a hash" };
        let direct = ops::create(&mut app.db.connect(), &upper, Entry::new(Event::UserCreated));

        assert!(!fullwidth.status.success(), "{}", output_text(&fullwidth));
        assert!(stderr(&fullwidth).contains("user \"Alice\" already exists"), "{}", stderr(&fullwidth));
        let err = direct.expect_err("ALICE is Alice");
        assert_eq!(AppError::from(err).status_code().as_u16(), 409);
        let list = stdout(&app.cli(&["user", "list"], ""));
        assert_eq!(list.matches("Alice").count(), 1, "{list}");
        assert!(!list.contains("ａｌｉｃｅ") && !list.contains("ALICE"), "{list}");
    }

    async fn any_spelling_that_folds_the_same_logs_in(backend: Backend) {
        let app = spawn_app(backend).await;
        let alice = add_user(&app.db, "Alice", ALICE_PASSWORD, TEST_BCRYPT_COST);

        for spelling in ["Alice", "alice", "ALICE", "ａｌｉｃｅ", "ＡＬＩＣＥ"] {
            let login = post_login(&new_client(), &app.address, spelling, ALICE_PASSWORD).await;
            assert_json(login, StatusCode::OK, json!({"message": "Login successful!", "user_id": alice.0})).await;
        }
    }

    async fn the_greeting_shows_the_name_as_first_written(backend: Backend) {
        let app = spawn_app(backend).await;
        add_user(&app.db, "Alice", ALICE_PASSWORD, TEST_BCRYPT_COST);

        assert_eq!(app.login("ALICE", ALICE_PASSWORD).await.status(), StatusCode::OK);

        assert_json(
            app.get("/protected").await,
            StatusCode::OK,
            json!({"message": "Hello, Alice! This is a protected route."}),
        )
        .await;
        let page = app.get_page("/protected").await.text().await.unwrap();
        assert!(page.contains("Hello, Alice!"), "{page}");
    }

    async fn invisible_characters_in_a_name_are_refused(backend: Backend) {
        let app = spawn_app(backend).await;

        for name in ["alice\u{200B}", "\u{202E}alice", "al\u{2066}ice"] {
            let login = app.login(name, ALICE_PASSWORD).await;
            assert_eq!(login.status(), StatusCode::BAD_REQUEST, "{name:?}");
            let message = json_body(login).await["message"].as_str().unwrap_or_default().to_owned();
            assert!(message.contains("invisible"), "{message}");

            let add = app.cli(&["user", "add", name, "--password-stdin"], &format!("{ALICE_PASSWORD}\n"));
            assert!(!add.status.success(), "{name:?}: {}", output_text(&add));
            assert!(stderr(&add).contains("invisible"), "{}", stderr(&add));
        }
        let list = stdout(&app.cli(&["user", "list"], ""));
        assert!(!list.contains("alice"), "{list}");
    }

    async fn throttling_counts_every_spelling_of_a_name_as_one(backend: Backend) {
        let app = spawn_app(backend).await;
        for spelling in ["Test_User", "TEST_USER", "ｔｅｓｔ＿ｕｓｅｒ", "test_user", "tEST_uSER"] {
            assert_eq!(app.login(spelling, "wrong guess").await.status(), StatusCode::UNAUTHORIZED);
        }

        let throttled = app.login(TEST_USER, TEST_PASSWORD).await;

        assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    async fn a_name_that_folds_longer_than_fifty_characters_works(backend: Backend) {
        // U+FDFA folds (NFKC) to 18 characters: the folded form outgrows the
        // 50 characters the name was typed with, in the throttle table too.
        let app = spawn_app(backend).await;
        let name = "\u{FDFA}".repeat(50);
        add_user(&app.db, &name, ALICE_PASSWORD, TEST_BCRYPT_COST);

        assert_eq!(app.login(&name, "wrong guess").await.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(app.login(&name, ALICE_PASSWORD).await.status(), StatusCode::OK);
    }
}
