//! The release file: the desired version of one service, a small YAML document that in a
//! cluster is a ConfigMap key mounted into every pod of the service.
//!
//! ```yaml
//! component: registry.example/skiff/users@sha256:…   # what `skiff push` printed
//! label: v1.5                                        # optional: the version header's value
//! canary:                                            # optional
//!   component: registry.example/skiff/users@sha256:…
//!   label: v1.6
//!   percent: 10
//! ```
//!
//! Without `component`, the service runs the component its image ships.

use serde::Deserialize;

use crate::service::valid_label;

/// A parsed, checked release file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// `REF@sha256:…`; `None` for the image's component.
    pub component: Option<String>,
    pub label: Option<String>,
    pub canary: Option<CanaryRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRelease {
    pub component: String,
    pub label: Option<String>,
    pub percent: u8,
}

impl Release {
    /// Parses and checks `text`; an empty file (or only comments) is the image's component.
    pub fn parse(text: &str) -> Result<Self, String> {
        let release: Option<Self> = serde_yaml_ng::from_str(text).map_err(|e| format!("the release file: {e}"))?;
        let release = release.unwrap_or_default();
        for label in [&release.label, &release.canary.as_ref().and_then(|c| c.label.clone())].into_iter().flatten() {
            if !valid_label(label) {
                return Err(format!(
                    "the release file: label {label:?} is not 1-64 characters of A-Z a-z 0-9 . - _ + :"
                ));
            }
        }
        if let Some(canary) = &release.canary {
            if !(1..=99).contains(&canary.percent) {
                return Err("the release file: a canary takes 1-99 percent of requests".into());
            }
            if release.component.as_deref() == Some(canary.component.as_str()) {
                return Err("the release file: the canary is the component itself".into());
            }
        }
        Ok(release)
    }

    /// What `component` says, for the status: the reference or `image`.
    pub fn desired(&self) -> String {
        self.component.clone().unwrap_or_else(|| "image".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REF: &str =
        "registry.example:5000/skiff/users@sha256:0f4c1a7c2a7e3d3e8f1c09b2e3b7c6d5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9";

    #[test]
    fn a_release_names_a_component_a_label_and_a_canary() {
        let text = format!(
            "# users\ncomponent: {REF}\nlabel: v1.5\ncanary:\n  component: other@sha256:{}\n  percent: 10\n",
            "a".repeat(64)
        );
        let release = Release::parse(&text).unwrap();
        assert_eq!(release.component.as_deref(), Some(REF));
        assert_eq!(release.label.as_deref(), Some("v1.5"));
        assert_eq!(release.canary.unwrap().percent, 10);
    }

    #[test]
    fn an_empty_file_is_the_images_component() {
        for text in ["", "# component: set me\n"] {
            assert_eq!(Release::parse(text).unwrap().desired(), "image");
        }
    }

    #[test]
    fn mistakes_are_refused() {
        for text in [
            "component: [1, 2]",
            "componnet: x",
            "label: 'has space'\n",
            &format!("component: {REF}\ncanary:\n  component: x\n  percent: 100\n"),
        ] {
            assert!(Release::parse(text).is_err(), "{text}");
        }
    }
}
