//! The signed-in user's account: active sessions, revoking one, signing out
//! everywhere, changing the password. JSON for programs, a page and forms for
//! browsers (forms CSRF-checked by `Body`, cross-site posts refused by the edge).

use actix_identity::IdentityExt as _;
use actix_session::SessionExt as _;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use diesel::Connection as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Client, Event};
use crate::auth::CurrentUser;
use crate::db;
use crate::error::AppError;
use crate::sessions::queries as session_queries;
use crate::sessions::store::{self, PUBLIC_ID_KEY, REMEMBER_KEY};
use crate::sessions::Remembered;
use crate::users::{queries as user_queries, NewPassword, UserId};
use crate::web::flash::{self, Flash};
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, AppState, Body, BodyKind, Wants};

/// One session as its owner sees it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub client_ip: String,
    pub user_agent: String,
    pub current: bool,
    pub remembered: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    style: &'a str,
    username: &'a str,
    sessions: &'a [SessionView],
    csrf_token: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct ChangePassword {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// The public id of this request's own session.
fn current_session_id(req: &HttpRequest) -> Option<String> {
    req.get_session()
        .get::<String>(PUBLIC_ID_KEY)
        .ok()
        .flatten()
}

async fn session_views(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<SessionView>, AppError> {
    let user_id = current.user.id;
    let rows = state
        .db(move |conn| Ok(session_queries::list_for_user(conn, user_id, db::now())?))
        .await?;
    let current_id = current_session_id(req);
    let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
    Ok(rows
        .iter()
        .map(|row| SessionView {
            current: current_id.as_deref() == Some(row.public_id.as_str()),
            remembered: store::is_remembered(row),
            id: row.public_id.clone(),
            created_at: time(row.created_at),
            last_seen_at: time(row.last_seen_at),
            expires_at: time(row.expires_at),
            client_ip: row
                .client_ip
                .clone()
                .unwrap_or_else(|| "an unknown address".into()),
            user_agent: row
                .user_agent
                .clone()
                .unwrap_or_else(|| "Unknown device".into()),
        })
        .collect())
}

async fn account_page(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let sessions = session_views(req, state, current).await?;
    let context = PageContext::new(req, state);
    context.render(
        status,
        &AccountPage {
            style: &STYLE_HREF,
            username: &current.user.username,
            sessions: &sessions,
            csrf_token: &context.csrf_token,
            notice: context.notice,
            error,
        },
    )
}

/// `GET /account`.
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    wants: Wants,
    current: CurrentUser,
) -> Result<HttpResponse, AppError> {
    if wants == Wants::Html {
        return account_page(&req, &state, &current, StatusCode::OK, None).await;
    }
    let sessions = session_views(&req, &state, &current).await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": current.user.id,
        "username": current.user.username,
        "sessions": sessions,
    })))
}

/// After an account action: count it, and forget the user's cached sessions
/// here at once (other instances hear of it through the session events).
fn acted(state: &AppState, user_id: UserId, event: Event) {
    state.metrics.event(event);
    state.cache.forget_user(user_id);
}

/// The answer to a successful account action: a message for programs, or
/// `303` to `location` with a one-time notice for browsers.
fn done(
    kind: BodyKind,
    state: &AppState,
    message: &str,
    location: &str,
    flash: Flash,
) -> Result<HttpResponse, AppError> {
    if kind == BodyKind::Form {
        let mut response = edge::see_other(location);
        response
            .add_cookie(&flash::set(flash, state.settings.cookie_secure))
            .map_err(AppError::internal)?;
        return Ok(response);
    }
    Ok(HttpResponse::Ok().json(json!({ "message": message })))
}

/// `POST /account/sessions/{id}/revoke`: signs one of the user's sessions out.
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: CurrentUser,
    path: web::Path<String>,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let user_id = current.user.id;
    let client = Client::of(&req);
    let target = public_id.clone();
    let removed = state
        .db(move |conn| {
            let removed = session_queries::delete_by_public_id(conn, user_id, &target)?;
            if removed > 0 {
                audit::record(
                    conn,
                    Event::SessionRevoked,
                    Some(user_id),
                    None,
                    &client,
                    None,
                )?;
            }
            Ok(removed)
        })
        .await?;
    if removed == 0 {
        return Err(AppError::NotFound);
    }
    acted(&state, user_id, Event::SessionRevoked);
    if current_session_id(&req).as_deref() == Some(public_id.as_str()) {
        // This very session: its row is gone; clear the cookie too.
        if let Ok(identity) = req.get_identity() {
            identity.logout();
        }
        return done(
            body.kind,
            &state,
            "Session revoked.",
            "/login",
            Flash::LoggedOut,
        );
    }
    done(
        body.kind,
        &state,
        "Session revoked.",
        "/account",
        Flash::SessionRevoked,
    )
}

/// `POST /account/logout-everywhere`: ends every session of the user, this one included.
pub async fn logout_everywhere(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: CurrentUser,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let user_id = current.user.id;
    let client = Client::of(&req);
    state
        .db(move |conn| {
            let ended = session_queries::delete_for_user(conn, user_id)?;
            let detail = format!("{ended} session(s)");
            audit::record(
                conn,
                Event::LogoutEverywhere,
                Some(user_id),
                None,
                &client,
                Some(&detail),
            )?;
            Ok(())
        })
        .await?;
    acted(&state, user_id, Event::LogoutEverywhere);
    if let Ok(identity) = req.get_identity() {
        identity.logout();
    }
    done(
        body.kind,
        &state,
        "Signed out everywhere.",
        "/login",
        Flash::SignedOutEverywhere,
    )
}

/// `POST /account/password`: checks the current password, sets the new one, ends
/// every other session and gives this one a fresh key.
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: CurrentUser,
    body: Body<ChangePassword>,
) -> Result<HttpResponse, AppError> {
    let kind = body.kind;
    let ChangePassword {
        current_password,
        new_password,
    } = body.value;
    let user_id = current.user.id;
    let client = Client::of(&req);

    let refused = |message: String| async {
        if kind == BodyKind::Form {
            account_page(
                &req,
                &state,
                &current,
                StatusCode::BAD_REQUEST,
                Some(&message),
            )
            .await
        } else {
            Err(AppError::BadRequest(message))
        }
    };

    let matched = state
        .hasher
        .verify(current_password, Some(current.user.password_hash.clone()))
        .await?;
    if !matched {
        let client = client.clone();
        state
            .db(move |conn| {
                Ok(audit::record(
                    conn,
                    Event::PasswordChangeFailed,
                    Some(user_id),
                    None,
                    &client,
                    None,
                )?)
            })
            .await?;
        state.metrics.event(Event::PasswordChangeFailed);
        return refused("Current password is incorrect.".to_owned()).await;
    }
    let new_password = match NewPassword::parse(new_password) {
        Ok(password) => password,
        Err(message) => return refused(message).await,
    };
    let hash = state.hasher.hash(new_password.expose().to_owned()).await?;
    let keep = current_session_id(&req).unwrap_or_default();
    state
        .db(move |conn| {
            conn.transaction(|conn| {
                user_queries::set_password_hash(conn, user_id, &hash)?;
                let ended = session_queries::delete_others_for_user(conn, user_id, &keep)?;
                let detail = format!("{ended} other session(s) ended");
                audit::record(
                    conn,
                    Event::PasswordChanged,
                    Some(user_id),
                    None,
                    &client,
                    Some(&detail),
                )
            })
            .map_err(AppError::from)
        })
        .await?;

    acted(&state, user_id, Event::PasswordChanged);
    // A fresh key for this session too: whoever held the old cookie is out.
    let session = req.get_session();
    let remembered = session
        .get::<bool>(REMEMBER_KEY)
        .ok()
        .flatten()
        .unwrap_or(false);
    session.renew();
    let mut response = done(
        kind,
        &state,
        "Password changed.",
        "/account",
        Flash::PasswordChanged,
    )?;
    if remembered {
        response.extensions_mut().insert(Remembered);
    }
    Ok(response)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/account")
            .route(web::get().to(show))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/account/sessions/{id}/revoke")
            .route(web::post().to(revoke))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/account/logout-everywhere")
            .route(web::post().to(logout_everywhere))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/account/password")
            .route(web::post().to(change_password))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
