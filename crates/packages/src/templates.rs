//! Config files are templates (minijinja, the Blade of this project), embedded in the binary. An operator may
//! override any of them by placing a file with the same relative name in `BROKEFORGE_TEMPLATE_DIR`.

use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::Serialize;

use crate::base::PackageError;
use brokeforge_core::ValidationError;

/// A config template a package ships in its own folder (`include_str!`), overridable by name.
#[derive(Debug)]
pub struct Template {
    /// e.g. `redis/redis.conf`: an override is `$BROKEFORGE_TEMPLATE_DIR/redis/redis.conf.j2`.
    pub name: &'static str,
    pub source: &'static str,
}

/// The template source: the operator's override if present, else the package's own.
fn source(dir: Option<&Path>, template: &Template) -> Result<String, PackageError> {
    if let Some(dir) = dir {
        let path = dir.join(format!("{}.j2", template.name));
        if path.is_file() {
            return std::fs::read_to_string(&path).map_err(|e| {
                ValidationError::new("template", format!("cannot read {}: {e}", path.display()))
                    .into()
            });
        }
    }
    Ok(template.source.to_string())
}

/// Render `template` with `context`. Undefined variables are errors, so a typo never yields a half
/// config.
pub fn render(template: &Template, context: impl Serialize) -> Result<String, PackageError> {
    let dir = std::env::var_os("BROKEFORGE_TEMPLATE_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    render_with(dir.as_deref(), template, context)
}

/// [`render`] with an explicit override directory.
pub fn render_with(
    dir: Option<&Path>,
    template: &Template,
    context: impl Serialize,
) -> Result<String, PackageError> {
    let name = template.name;
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    let src = source(dir, template)?;
    env.add_template_owned(name.to_string(), src)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?;
    let tmpl = env
        .get_template(name)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?;
    Ok(tmpl
        .render(context)
        .map_err(|e| ValidationError::new("template", format!("{name}: {e}")))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operator_overrides_win_and_undefined_variables_fail() {
        const T: Template = Template {
            name: "redis/redis.conf",
            source: "# Managed by BrokeForge\nbind {{ bind }}\n",
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("redis")).unwrap();
        std::fs::write(
            dir.path().join("redis/redis.conf.j2"),
            "custom {{ bind }}\n",
        )
        .unwrap();
        let ctx = json!({"bind": "127.0.0.1", "password": "x"});
        assert_eq!(
            render_with(Some(dir.path()), &T, &ctx).unwrap(),
            "custom 127.0.0.1\n"
        );
        assert_eq!(
            render_with(None, &T, &ctx).unwrap(),
            "# Managed by BrokeForge\nbind 127.0.0.1\n"
        );
        assert!(render_with(None, &T, json!({"password": "x"})).is_err());
    }
}
