//! Registry on PostgreSQL: agencies, tokens, agents, systems, operators,
//! policies.

use prost::Message as _;

use super::{PgStore, big, exec, lock_counter, next_counter, opt, rec, rows};
use crate::store::{
    AgencyRec, AgentRec, EnrollError, OperatorRec, PolicyRec, SledStore, StoreError, SystemRec, TokenRec,
    token_hash,
};

impl PgStore {
    // ----- agencies -----

    pub fn add_agency(&self, r: AgencyRec) -> Result<AgencyRec, StoreError> {
        let n = self.read(|c| {
            exec(
                c,
                "INSERT INTO agencies (code, rec) VALUES ($1, $2) ON CONFLICT (code) DO NOTHING",
                &[&r.code, &r.encode_to_vec()],
            )
        })?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("agency `{}`", r.code)));
        }
        Ok(r)
    }

    pub fn agency(&self, code: &str) -> Result<Option<AgencyRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM agencies WHERE code = $1", &[&code])?
                .map(|r| rec("agencies", &r, 0))
                .transpose()
        })
    }

    pub fn agencies(&self) -> Result<Vec<AgencyRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM agencies ORDER BY code", &[])?
                .iter()
                .map(|r| rec("agencies", r, 0))
                .collect()
        })
    }

    /// Applies `f` to an agency in one transaction. `Ok(Err(e))` when `f`
    /// refused; `Ok(Ok(None))` when the agency does not exist.
    pub fn update_agency<E>(
        &self,
        code: &str,
        mut f: impl FnMut(&mut AgencyRec) -> Result<(), E>,
    ) -> Result<Result<Option<AgencyRec>, E>, StoreError> {
        self.tx(|tx| {
            let Some(row) = opt(tx, "SELECT rec FROM agencies WHERE code = $1 FOR UPDATE", &[&code])? else {
                return Ok(Ok(None));
            };
            let mut r: AgencyRec = rec("agencies", &row, 0)?;
            if let Err(e) = f(&mut r) {
                return Ok(Err(e));
            }
            exec(tx, "UPDATE agencies SET rec = $2 WHERE code = $1", &[&code, &r.encode_to_vec()])?;
            Ok(Ok(Some(r)))
        })
    }

    /// Stores all agencies (created or replaced) in one transaction.
    pub fn put_agencies(&self, recs: &[AgencyRec]) -> Result<(), StoreError> {
        self.tx(|tx| {
            for r in recs {
                exec(
                    tx,
                    "INSERT INTO agencies (code, rec) VALUES ($1, $2)
                     ON CONFLICT (code) DO UPDATE SET rec = excluded.rec",
                    &[&r.code, &r.encode_to_vec()],
                )?;
            }
            Ok(())
        })
    }

    // ----- systems -----

    /// Stores systems in one transaction; those with id 0 get a new id.
    pub fn put_systems(&self, recs: Vec<SystemRec>) -> Result<Vec<SystemRec>, StoreError> {
        self.tx(|tx| {
            let mut out = Vec::with_capacity(recs.len());
            for mut r in recs {
                if r.id == 0 {
                    r.id = next_counter(tx, "system")?;
                } else if opt(tx, "SELECT 1 FROM systems WHERE id = $1", &[&big(r.id)])?.is_none() {
                    return Err(StoreError::NotFound(format!("system {}", r.id)));
                }
                exec(
                    tx,
                    "INSERT INTO systems (id, rec) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET rec = excluded.rec",
                    &[&big(r.id), &r.encode_to_vec()],
                )?;
                out.push(r);
            }
            Ok(out)
        })
    }

    pub fn system(&self, id: u64) -> Result<Option<SystemRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM systems WHERE id = $1", &[&big(id)])?
                .map(|r| rec("systems", &r, 0))
                .transpose()
        })
    }

    pub fn systems(&self) -> Result<Vec<SystemRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM systems ORDER BY id", &[])?
                .iter()
                .map(|r| rec("systems", r, 0))
                .collect()
        })
    }

    // ----- enrollment tokens -----

    pub fn add_token(&self, token: &str, r: TokenRec) -> Result<(), StoreError> {
        self.read(|c| {
            exec(
                c,
                "INSERT INTO tokens (hash, rec) VALUES ($1, $2)
                 ON CONFLICT (hash) DO UPDATE SET rec = excluded.rec",
                &[&token_hash(token).as_slice(), &r.encode_to_vec()],
            )
        })?;
        Ok(())
    }

    /// Checks a token without using it.
    pub fn check_token(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
    ) -> Result<TokenRec, EnrollError> {
        let hash = token_hash(token);
        let Some(r) = self.read(|c| {
            opt(c, "SELECT rec FROM tokens WHERE hash = $1", &[&hash.as_slice()])?
                .map(|r| rec::<TokenRec>("tokens", &r, 0))
                .transpose()
        })?
        else {
            return Err(EnrollError::Unknown);
        };
        SledStore::token_usable(&r, expected_agency, now_us)?;
        if self.agency(&r.agency)?.is_none() {
            return Err(EnrollError::AgencyGone);
        }
        Ok(r)
    }

    /// Uses the token and creates the agent in one transaction (the token's
    /// row is locked: a concurrent use of the same token waits and loses).
    pub fn enroll(
        &self,
        token: &str,
        expected_agency: Option<&str>,
        now_us: i64,
        agent: AgentRec,
    ) -> Result<(), EnrollError> {
        let hash = token_hash(token);
        self.tx(|tx| {
            let Some(row) =
                opt(tx, "SELECT rec FROM tokens WHERE hash = $1 FOR UPDATE", &[&hash.as_slice()])?
            else {
                return Err(EnrollError::Unknown);
            };
            let mut t: TokenRec = rec("tokens", &row, 0)?;
            SledStore::token_usable(&t, expected_agency, now_us)?;
            let n = exec(
                tx,
                "INSERT INTO agents (agent_id, rec) VALUES ($1, $2) ON CONFLICT (agent_id) DO NOTHING",
                &[&agent.agent_id, &agent.encode_to_vec()],
            )?;
            if n == 0 {
                return Err(StoreError::AlreadyExists(format!("agent {}", agent.agent_id)).into());
            }
            t.used_us = now_us;
            t.used_by = agent.agent_id.clone();
            exec(tx, "UPDATE tokens SET rec = $2 WHERE hash = $1", &[&hash.as_slice(), &t.encode_to_vec()])?;
            Ok(())
        })
    }

    // ----- agents -----

    pub fn agent(&self, agent_id: &str) -> Result<Option<AgentRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM agents WHERE agent_id = $1", &[&agent_id])?
                .map(|r| rec("agents", &r, 0))
                .transpose()
        })
    }

    pub fn agents(&self) -> Result<Vec<AgentRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM agents ORDER BY agent_id", &[])?
                .iter()
                .map(|r| rec("agents", r, 0))
                .collect()
        })
    }

    /// Applies `f` to the agent record in one transaction; `None` when the
    /// agent does not exist.
    pub fn update_agent(
        &self,
        agent_id: &str,
        mut f: impl FnMut(&mut AgentRec),
    ) -> Result<Option<AgentRec>, StoreError> {
        self.tx(|tx| {
            let Some(row) = opt(tx, "SELECT rec FROM agents WHERE agent_id = $1 FOR UPDATE", &[&agent_id])?
            else {
                return Ok(None);
            };
            let mut a: AgentRec = rec("agents", &row, 0)?;
            f(&mut a);
            exec(tx, "UPDATE agents SET rec = $2 WHERE agent_id = $1", &[&agent_id, &a.encode_to_vec()])?;
            Ok(Some(a))
        })
    }

    // ----- operators -----

    pub fn add_operator(&self, r: OperatorRec) -> Result<OperatorRec, StoreError> {
        let n = self.read(|c| {
            exec(
                c,
                "INSERT INTO operators (name, rec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&r.name, &r.encode_to_vec()],
            )
        })?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(format!("operator `{}`", r.name)));
        }
        Ok(r)
    }

    pub fn operator(&self, name: &str) -> Result<Option<OperatorRec>, StoreError> {
        self.read(|c| {
            opt(c, "SELECT rec FROM operators WHERE name = $1", &[&name])?
                .map(|r| rec("operators", &r, 0))
                .transpose()
        })
    }

    pub fn operators(&self) -> Result<Vec<OperatorRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM operators ORDER BY name", &[])?
                .iter()
                .map(|r| rec("operators", r, 0))
                .collect()
        })
    }

    /// Changes an operator record in place (password, language).
    pub fn update_operator(
        &self,
        name: &str,
        f: impl FnOnce(&mut OperatorRec),
    ) -> Result<Option<OperatorRec>, StoreError> {
        self.tx(|tx| {
            lock_counter(tx, "operators")?;
            let Some(row) = opt(tx, "SELECT rec FROM operators WHERE name = $1", &[&name])? else {
                return Ok(None);
            };
            let mut r: OperatorRec = rec("operators", &row, 0)?;
            f(&mut r);
            exec(tx, "UPDATE operators SET rec = $2 WHERE name = $1", &[&name, &r.encode_to_vec()])?;
            Ok(Some(r))
        })
    }

    /// Revokes operator `name` unless it is the last valid admin (checked
    /// under the `operators` row lock, so two revocations cannot both pass).
    pub fn revoke_operator(
        &self,
        name: &str,
        now_us: i64,
        by: &str,
        reason: &str,
    ) -> Result<Option<OperatorRec>, StoreError> {
        self.tx(|tx| {
            lock_counter(tx, "operators")?;
            let all: Vec<OperatorRec> = rows(tx, "SELECT rec FROM operators", &[])?
                .iter()
                .map(|r| rec("operators", r, 0))
                .collect::<Result<_, _>>()?;
            let Some(mut r) = all.iter().find(|o| o.name == name).cloned() else {
                return Ok(None);
            };
            if r.revoked_us != 0 {
                return Ok(Some(r));
            }
            if r.role == "admin"
                && !all.iter().any(|o| o.name != name && o.role == "admin" && o.revoked_us == 0)
            {
                return Err(StoreError::Conflict(format!(
                    "operator `{name}` is the last admin; add another admin before revoking it"
                )));
            }
            r.revoked_us = now_us;
            r.revoked_by = by.to_string();
            r.revoke_reason = reason.to_string();
            exec(tx, "UPDATE operators SET rec = $2 WHERE name = $1", &[&name, &r.encode_to_vec()])?;
            Ok(Some(r))
        })
    }

    // ----- policies -----

    /// Stores a new policy version for `scope` (agency code or `*`).
    pub fn add_policy(&self, mut r: PolicyRec) -> Result<PolicyRec, StoreError> {
        self.tx(|tx| {
            r.policy_version = next_counter(tx, "policy")?;
            exec(
                tx,
                "INSERT INTO policies (version, scope, rec) VALUES ($1, $2, $3)",
                &[&big(r.policy_version), &r.scope, &r.encode_to_vec()],
            )?;
            Ok(r)
        })
    }

    /// All policy versions, newest first.
    pub fn policies(&self) -> Result<Vec<PolicyRec>, StoreError> {
        self.read(|c| {
            rows(c, "SELECT rec FROM policies ORDER BY version DESC", &[])?
                .iter()
                .map(|r| rec("policies", r, 0))
                .collect()
        })
    }

    /// The newest policy pushed to the agency or to all agencies.
    pub fn effective_policy(&self, agency: &str) -> Result<Option<PolicyRec>, StoreError> {
        self.read(|c| {
            opt(
                c,
                "SELECT rec FROM policies WHERE scope = '*' OR scope = $1 ORDER BY version DESC LIMIT 1",
                &[&agency],
            )?
            .map(|r| rec("policies", &r, 0))
            .transpose()
        })
    }
}
