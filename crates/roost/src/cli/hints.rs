//! The CLI's own advice after an API error: the service says what is
//! missing, in words that name no front end, and this module names the
//! `roost` command that provides it.

use roost_client::ClientError;
use roost_types::Missing;

/// The command that helps after `err`, if the API said something the
/// request named is missing.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain()
        .find_map(|cause| match cause.downcast_ref::<ClientError>() {
            Some(ClientError::Api {
                missing: Some(missing),
                ..
            }) => Some(missing_hint(missing)),
            _ => None,
        })
}

fn missing_hint(missing: &Missing) -> String {
    match missing {
        Missing::App { app } => format!("create it with `roost apps create {app}`"),
        Missing::ImageUnnamed => "`roost image list` shows the stored images".into(),
        Missing::Image { .. } => {
            "import it with `roost image import PATH --name NAME:TAG` or pull it with `roost image pull REFERENCE`".into()
        }
        Missing::Bucket { app, .. } => {
            format!("`roost storage list --app {app}` shows its buckets")
        }
        Missing::Snapshot { .. } => {
            "`roost volumes snapshots list VOLUME_ID` shows a volume's snapshots".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_app_is_answered_with_the_command_that_creates_it() {
        let err = anyhow::Error::new(ClientError::Api {
            status: 404,
            message: "app 'web' not found".into(),
            missing: Some(Missing::App { app: "web".into() }),
        })
        .context("cannot list machines");
        assert_eq!(
            hint(&err).as_deref(),
            Some("create it with `roost apps create web`")
        );
    }

    #[test]
    fn other_errors_get_no_hint() {
        let err = anyhow::Error::new(ClientError::Api {
            status: 409,
            message: "machine is stopped".into(),
            missing: None,
        });
        assert_eq!(hint(&err), None);
        assert_eq!(hint(&anyhow::anyhow!("no token")), None);
    }
}
