//! Secret and binding commands: create, list, get, update, revoke, delete,
//! bind, unbind, list-bindings. Names resolve in `--workspace`.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde_json::json;

use crate::model::{BindingFilter, NewBinding, NewSecret, Secret, SecretBinding, SecretFilter};
use crate::store::SecretsStore;

use super::args::{
    BindArgs, CreateArgs, DeleteArgs, ListArgs, ListBindingsArgs, NameArgs, UnbindArgs, UpdateArgs,
};
use super::output::{bindings_table, emit, emit_json, emit_table, secret_detail, secrets_table};
use super::{Ctx, actor, input};

async fn resolve(store: &dyn SecretsStore, ctx: &Ctx, name: &str) -> Result<Secret> {
    Ok(store.get_secret_by_name(ctx.workspace(), name).await?)
}

/// Print a written secret: a confirmation line, or its JSON.
fn report_secret(ctx: &Ctx, s: &Secret, verb: &str) -> Result<()> {
    if ctx.json() {
        emit_json(s)
    } else if ctx.chatty() {
        emit(&format!(
            "{verb} secret '{}' in workspace '{}' (id {}, value {})",
            s.secret_name, s.workspace, s.secret_id, s.masked_value
        ))
    } else {
        Ok(())
    }
}

pub(super) async fn create(ctx: &Ctx, a: CreateArgs) -> Result<ExitCode> {
    // Open the store first: a missing keystore should fail before the user
    // types a value.
    let store = ctx.open_api(true).await?;
    let value = input::read_value(a.value, &a.name)?;
    let new = NewSecret {
        workspace: ctx.workspace(),
        secret_name: &a.name,
        is_shared: a.shared,
        provider: a.provider.as_deref(),
    };
    let s = store.create_secret_with(&new, &value, &actor()).await?;
    report_secret(ctx, &s, "Created")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn update(ctx: &Ctx, a: UpdateArgs) -> Result<ExitCode> {
    let store = ctx.open_api(true).await?;
    let current = resolve(&*store, ctx, &a.name).await?;
    let value = input::read_value(a.value, &a.name)?;
    let s = store
        .update_secret(&current.secret_id, &value, &actor())
        .await?;
    report_secret(ctx, &s, "Updated")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn get(ctx: &Ctx, a: NameArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let s = resolve(&*store, ctx, &a.name).await?;
    if ctx.json() {
        emit_json(&s)?;
    } else {
        emit_table(&secret_detail(&s))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn revoke(ctx: &Ctx, a: NameArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let current = resolve(&*store, ctx, &a.name).await?;
    let s = store.revoke_secret(&current.secret_id, &actor()).await?;
    report_secret(ctx, &s, "Revoked")?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let s = resolve(&*store, ctx, &a.name).await?;
    let bindings = all_bindings(
        &*store,
        BindingFilter {
            secret_id: Some(s.secret_id.clone()),
            ..Default::default()
        },
    )
    .await?;
    if !a.yes && !confirm_delete(&s, bindings.len())? {
        bail!("secret '{}' was not deleted", s.secret_name);
    }
    store.delete_secret(&s.secret_id, &actor()).await?;
    if ctx.json() {
        emit_json(&json!({
            "secret_id": s.secret_id,
            "deleted": true,
            "bindings_deleted": bindings.len(),
        }))?;
    } else if ctx.chatty() {
        emit(&format!(
            "Deleted secret '{}' in workspace '{}' and {} binding(s)",
            s.secret_name,
            s.workspace,
            bindings.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ask on the terminal. Without one there is nobody to ask, and deleting
/// by default would be the wrong way to fail.
fn confirm_delete(s: &Secret, bindings: usize) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to delete secret '{}' without confirmation: stdin is not a terminal, pass --yes",
            s.secret_name
        );
    }
    eprint!(
        "Delete secret '{}' in workspace '{}' and its {bindings} binding(s)? [y/N] ",
        s.secret_name, s.workspace
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

pub(super) async fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let mut filter = SecretFilter {
        workspace: (!a.all_workspaces).then(|| ctx.workspace().to_string()),
        is_shared: a.shared.then_some(true),
        state: a.state,
        page_token: a.page_token.clone(),
        max_results: a.max_results,
    };
    let one_page = a.page_token.is_some() || a.max_results.is_some();
    let mut secrets = Vec::new();
    let next = loop {
        let page = store.list_secrets(&filter).await?;
        secrets.extend(page.items);
        match page.next_page_token {
            Some(t) if !one_page => filter.page_token = Some(t),
            other => break other,
        }
    };
    if ctx.json() {
        emit_json(&json!({ "secrets": secrets, "next_page_token": next }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if secrets.is_empty() {
        emit(&match a.all_workspaces {
            true => "No secrets.".to_string(),
            false => format!("No secrets in workspace '{}'.", ctx.workspace()),
        })?;
    } else {
        emit_table(&secrets_table(&secrets, a.all_workspaces))?;
    }
    if let Some(t) = next {
        emit(&format!("\nMore results: --page-token {t}"))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn bind(ctx: &Ctx, a: BindArgs) -> Result<ExitCode> {
    // A field binding checks that the value has the field: that needs the
    // keystore (on a database store; a server checks on its side).
    let store = ctx.open_api(a.field.is_some()).await?;
    let s = resolve(&*store, ctx, &a.name).await?;
    let new = NewBinding {
        secret_id: &s.secret_id,
        resource_type: &a.resource_type,
        resource_id: &a.resource_id,
        binding_name: &a.binding_name,
        value_field: a.field.as_deref(),
        service_accounts: &a.service_accounts,
    };
    let b = store.bind_secret_with(&new, &actor()).await?;
    if ctx.json() {
        emit_json(&b)?;
    } else if ctx.chatty() {
        emit(&format!(
            "Bound secret '{}' to {}/{} as {} (binding id {})",
            s.secret_name, b.resource_type, b.resource_id, b.binding_name, b.binding_id
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn unbind(ctx: &Ctx, a: UnbindArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let b = store.get_binding(&a.binding_id).await?;
    store.unbind_secret(&b.binding_id, &actor()).await?;
    if ctx.json() {
        emit_json(&json!({ "binding_id": b.binding_id, "unbound": true }))?;
    } else if ctx.chatty() {
        emit(&format!(
            "Removed binding {} ({} for {}/{})",
            b.binding_id, b.binding_name, b.resource_type, b.resource_id
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn list_bindings(ctx: &Ctx, a: ListBindingsArgs) -> Result<ExitCode> {
    let store = ctx.open_api(false).await?;
    let secret_id = match &a.secret {
        Some(name) => Some(resolve(&*store, ctx, name).await?.secret_id),
        None => None,
    };
    let bindings = all_bindings(
        &*store,
        BindingFilter {
            workspace: (!a.all_workspaces).then(|| ctx.workspace().to_string()),
            resource_type: a.resource_type,
            resource_id: a.resource_id,
            secret_id,
            ..Default::default()
        },
    )
    .await?;
    if ctx.json() {
        emit_json(&json!({ "bindings": bindings }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if bindings.is_empty() {
        emit("No bindings.")?;
        return Ok(ExitCode::SUCCESS);
    }
    let names = secret_names(&*store, &bindings).await;
    emit_table(&bindings_table(&bindings, a.all_workspaces, |id| {
        names.get(id).cloned().unwrap_or_else(|| id.to_string())
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Every page of a binding listing.
async fn all_bindings(
    store: &dyn SecretsStore,
    mut filter: BindingFilter,
) -> Result<Vec<SecretBinding>> {
    let mut out = Vec::new();
    loop {
        let page = store.list_bindings(&filter).await?;
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => filter.page_token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Secret names for the SECRET column, one lookup per distinct secret. A
/// lookup that fails just shows the id.
async fn secret_names(
    store: &dyn SecretsStore,
    bindings: &[SecretBinding],
) -> HashMap<String, String> {
    let mut names = HashMap::new();
    for b in bindings {
        if names.contains_key(&b.secret_id) {
            continue;
        }
        if let Ok(s) = store.get_secret(&b.secret_id).await {
            names.insert(b.secret_id.clone(), s.secret_name);
        }
    }
    names
}
