//! Where a read model's tables live: their live names, or a shadow set being
//! rebuilt beside them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a read model's tables live: the live names, or a shadow set being rebuilt.
#[derive(Debug, Clone)]
pub struct Tables {
    prefix: String,
    /// Each template with the prefix filled in, made once: statements borrow
    /// it instead of allocating per event. (Bounded: a few dozen templates per
    /// prefix, and a new prefix only per rebuild.)
    rendered: Arc<Mutex<HashMap<(usize, usize), &'static str>>>,
}

impl Tables {
    pub fn live() -> Self {
        Tables { prefix: String::new(), rendered: Arc::default() }
    }

    pub(super) fn shadow(generation: i64) -> Self {
        Tables { prefix: format!("rebuild{generation}_"), rendered: Arc::default() }
    }

    /// `template` with each `{p}` replaced by the table prefix.
    pub fn sql(&self, template: &'static str) -> Cow<'static, str> {
        let key = (template.as_ptr() as usize, template.len());
        let Ok(mut rendered) = self.rendered.lock() else {
            return Cow::Owned(template.replace("{p}", &self.prefix));
        };
        let sql =
            rendered.entry(key).or_insert_with(|| Box::leak(template.replace("{p}", &self.prefix).into_boxed_str()));
        Cow::Borrowed(*sql)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn name(&self, table: &str) -> String {
        format!("{}{table}", self.prefix)
    }
}
