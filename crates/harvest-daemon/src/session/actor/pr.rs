//! `session/pr`: the session's work becomes a pull request. Harvest commits in the
//! sandbox (the agent's hooks skipped), the commits leave it as a bundle, this machine
//! pushes the branch with the user's token and opens the pull request. Each step is an
//! event (`git_operation`, `pr_created`); the token is used here and dropped.

use super::Actor;
use harvest_forge::github::{GitHub, NewPullRequest};
use harvest_forge::{ForgeError, RepoName};
use harvest_protocol::methods::{PrParams, PrResult};
use harvest_protocol::rpc::{RpcError, codes};
use harvest_protocol::{EventBody, Seq};
use harvest_sandbox::WorkspaceSource;

impl Actor {
    pub(super) async fn pull_request(&mut self, p: PrParams) -> Result<PrResult, RpcError> {
        let state = |m: String| RpcError::new(codes::SESSION_STATE, m);
        let (Some(branch), Some(base)) = (self.spec.branch.clone(), self.spec.base.clone()) else {
            return Err(state(
                "this session has no branch of its own: a pull request needs a session made \
                 with --repo (a clone, not --workspace or --in-place)"
                    .into(),
            ));
        };
        let repo = self.forge_repo().await?;
        let github = GitHub::new(
            p.api_url.as_deref().unwrap_or(&repo.default_api()),
            p.token.clone(),
        )
        .map_err(forge)?;
        let into = match &p.base {
            Some(b) => b.clone(),
            None => github.default_branch(&repo).await.map_err(forge)?,
        };
        // The sandbox first: the summary's diffstat is made in it.
        self.ensure_sandbox().await?;
        let summary = self.summary(&base).await;
        let title = p.title.clone().unwrap_or_else(|| summary.title.clone());
        let message = format!("{title}\n\n{}\n{}", summary.body, summary.footer);
        let author = p
            .author
            .clone()
            .unwrap_or_else(|| "Harvest <harvest@localhost>".into());
        let (name, email) = split_author(&author);

        let Some(sandbox) = self.sandbox.as_ref() else {
            return Err(RpcError::new(codes::SANDBOX_UNAVAILABLE, "no sandbox"));
        };
        let committed =
            crate::review::commit_and_bundle(sandbox.as_ref(), &base, &message, (name, email))
                .await;
        let (commit, bundle) = match committed {
            Ok(c) => c,
            Err(e) => {
                self.git_event("commit", false, e.clone()).await;
                return Err(state(e));
            }
        };
        self.git_event("commit", true, format!("{} on {branch}", &commit[..12]))
            .await;
        let commits = harvest_forge::push::SessionCommits {
            bundle: &bundle,
            base: &base,
            tip: &commit,
        };
        if let Err(e) =
            harvest_forge::push::push_bundle(commits, &repo, &into, &branch, &p.token).await
        {
            let e = forge(e);
            self.git_event("push", false, e.message.clone()).await;
            return Err(e);
        }
        self.git_event("push", true, format!("{branch} to {}", repo.push_url()))
            .await;
        let opened = github
            .open(
                &repo,
                &NewPullRequest {
                    title: &title,
                    body: &format!("{}\n\n---\n{}", summary.body, summary.footer),
                    head: &branch,
                    base: &into,
                    draft: p.draft,
                },
            )
            .await;
        let pr = match opened {
            Ok(pr) => pr,
            Err(e) => {
                let mut e = forge(e);
                e.message = format!(
                    "{}; the branch {branch} is pushed: once that is fixed, run `harvest pr {}` again",
                    e.message, self.id
                );
                self.emit(vec![EventBody::Error {
                    message: e.message.clone(),
                }])
                .await;
                return Err(e);
            }
        };
        self.spec.pr_url = Some(pr.url.clone());
        self.persist_spec();
        self.emit(vec![EventBody::PrCreated {
            url: pr.url.clone(),
            number: pr.number,
            branch: branch.clone(),
        }])
        .await;
        Ok(PrResult {
            url: pr.url,
            number: pr.number,
            branch,
            existing: pr.existing,
        })
    }

    async fn git_event(&mut self, operation: &str, ok: bool, detail: String) {
        self.emit(vec![EventBody::GitOperation {
            operation: operation.into(),
            ok,
            detail,
        }])
        .await;
    }

    /// The forge repository the session's clone came from (for a local repository, its
    /// `origin`).
    async fn forge_repo(&self) -> Result<RepoName, RpcError> {
        let bad = |m: String| RpcError::new(codes::SESSION_STATE, m);
        let WorkspaceSource::Clone { url } = self.spec.workspace_source() else {
            return Err(bad("this session's workspace is not a clone".into()));
        };
        let remote = if url.starts_with('/') {
            // The user's own repository (trusted, unlike the session's clone).
            let out = tokio::process::Command::new("git")
                .arg("-C")
                .arg(&url)
                .args(["remote", "get-url", "origin"])
                .output()
                .await
                .map_err(|e| bad(format!("cannot run git: {e}")))?;
            if !out.status.success() {
                return Err(bad(format!(
                    "{url} has no `origin` remote to open a pull request on"
                )));
            }
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        } else {
            url
        };
        RepoName::parse(&remote).ok_or_else(|| {
            bad(format!(
                "{} is not a forge repository (owner/name): a pull request needs a GitHub remote",
                harvest_sandbox::local::redact_url(&remote)
            ))
        })
    }

    /// What the commit and the pull request say of the session: its first prompt, what
    /// the agent last said it did, the diffstat, its cost and turns.
    async fn summary(&mut self, base: &str) -> Summary {
        let (store, id) = (self.daemon.store.clone(), self.id.clone());
        let found = tokio::task::spawn_blocking(move || {
            let info = store.session(&id).ok().flatten().map(|r| r.info);
            let (mut said, mut turns, mut from) = (None, 0u32, Seq(0));
            while let Ok(batch) = store.read_from(&id, from, 2000) {
                let Some(last) = batch.last() else { break };
                from = Seq(last.seq.0 + 1);
                for e in &batch {
                    let v: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
                    match v["type"].as_str() {
                        Some("assistant_text") => said = v["text"].as_str().map(str::to_owned),
                        Some("turn_result") => turns += 1,
                        _ => {}
                    }
                }
            }
            (info, said, turns)
        })
        .await
        .unwrap_or_default();
        let (info, said, turns) = found;
        let prompt = info
            .as_ref()
            .and_then(|i| i.first_prompt.clone())
            .unwrap_or_default();
        let cost = info.as_ref().map_or(0.0, |i| i.cost_usd);
        let stat = match self.sandbox.as_ref() {
            Some(s) => crate::review::diff(s.as_ref(), base, true)
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            None => String::new(),
        };
        let title = prompt
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(72)
            .collect::<String>();
        let title = if title.trim().is_empty() {
            format!("Harvest session {}", self.id)
        } else {
            title
        };
        let mut body = format!("Prompt:\n\n> {}\n", quoted(&prompt, 4000));
        if let Some(s) = said {
            // The agent's words, quoted and bounded: they go out under the user's name.
            body.push_str(&format!(
                "\nThe agent's summary:\n\n> {}\n",
                quoted(&s, 8000)
            ));
        }
        if !stat.trim().is_empty() {
            let stat = cut(stat.trim_end(), 20_000).replace("```", "'''");
            body.push_str(&format!("\n```\n{stat}\n```\n"));
        }
        body.push_str(&format!("\n{turns} turn(s), ${cost:.4}.\n"));
        Summary {
            title,
            body,
            footer: format!(
                "Made by Harvest from session {}: Harvest committed, pushed and opened this; the agent never held the token.",
                self.id
            ),
        }
    }
}

struct Summary {
    title: String,
    body: String,
    footer: String,
}

/// At most `max` characters of `text`, each line quoted.
fn quoted(text: &str, max: usize) -> String {
    cut(text, max).replace('\n', "\n> ")
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// `Name <email>` → (name, email).
fn split_author(author: &str) -> (&str, &str) {
    match author.split_once('<') {
        Some((name, rest)) => (name.trim(), rest.trim_end_matches('>').trim()),
        None => (author.trim(), "harvest@localhost"),
    }
}

fn forge(e: ForgeError) -> RpcError {
    let code = match e {
        ForgeError::NoToken | ForgeError::Unauthorized(_) | ForgeError::Forbidden { .. } => {
            codes::INVALID_PARAMS
        }
        _ => codes::SESSION_STATE,
    };
    RpcError::new(code, e.to_string())
}
