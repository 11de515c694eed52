//! The CLI's own advice after an error: the service says what went
//! wrong (what is missing, what the host refused) in words that name no
//! front end, and this module names the `roost` command that helps.

use roost_client::ClientError;
use roost_machines::MachineError;
use roost_types::Missing;

/// The command that helps after `err`: the API said something the request
/// named is missing, or `roost up` could not set up the private network.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        if let Some(ClientError::Api {
            missing: Some(missing),
            ..
        }) = cause.downcast_ref::<ClientError>()
        {
            return Some(missing_hint(missing));
        }
        match cause.downcast_ref::<MachineError>() {
            Some(MachineError::PrivateNetwork(_)) => Some(
                "run `roost up --no-private-network` to run machines without one (each alone \
                 with a loopback interface)"
                    .into(),
            ),
            Some(MachineError::NetnsDirTaken(_)) => Some(
                "give this `roost up` its own `--netns-dir` (or its own `--network-site`, whose \
                 default dir differs)"
                    .into(),
            ),
            _ => None,
        }
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
    fn a_private_network_roost_up_cannot_set_up_is_answered_with_running_without_one() {
        let err = anyhow::Error::new(MachineError::PrivateNetwork(
            "Operation not permitted".into(),
        ))
        .context("cannot open roost's state");
        let hint = hint(&err).expect("a hint");
        assert!(
            hint.starts_with("run `roost up --no-private-network`"),
            "{hint}"
        );
        // The service's own message names no command.
        assert!(
            !format!("{err:#}").contains("--no-private-network"),
            "{err:#}"
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
        let internal = anyhow::Error::new(MachineError::Internal(
            "cannot set up the machines' private network".into(),
        ));
        assert_eq!(
            hint(&internal),
            None,
            "matched on the variant, not the text"
        );
    }

    #[test]
    fn a_netns_dir_another_daemon_owns_is_answered_with_a_dir_of_its_own() {
        let err = anyhow::Error::new(MachineError::NetnsDirTaken(
            "the network namespace dir /run/roost/netns belongs to another roost".into(),
        ))
        .context("cannot open roost's state");
        let hint = hint(&err).expect("a hint");
        assert!(hint.contains("`--netns-dir`"), "{hint}");
        assert!(!format!("{err:#}").contains("--"), "{err:#}");
    }
}
