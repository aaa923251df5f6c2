# bash completion for outlast(1).
# Installed as .../bash-completion/completions/outlast.

_outlast_agents()
{
    # Agent names from the node (quietly; nothing when it is not running).
    local args=()
    local i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case ${COMP_WORDS[i]} in
        --data-dir | --socket | --db)
            args+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}")
            ;;
        esac
    done
    "${COMP_WORDS[0]}" "${args[@]}" --timeout 2000 agents 2>/dev/null |
        awk 'NR > 1 { print $1 }'
}

_outlast()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local commands="status agents show history effects logs top spawn stop start
        restart rm config send upgrade verify export recover keygen cluster
        help"
    local globals="--data-dir --socket --db --json --timeout --help --version"

    case $prev in
    --data-dir)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --socket | --db | --out | --config | --from)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --state)
        COMPREPLY=($(compgen -W "pending in-flight retrying done failed
            in-doubt open" -- "$cur"))
        return
        ;;
    --timeout | --limit | --lines | -n | --interval | --count | --duration | \
        --epoch-floor | --node-id | --request-id | --prefix)
        return
        ;;
    esac

    # The command is the first word that is not an option or its value.
    local cmd="" sub="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
        --data-dir | --socket | --db | --timeout) ((i++)) ;;
        -*) ;;
        *)
            if [[ -z $cmd ]]; then
                cmd=${words[i]}
            elif [[ -z $sub ]]; then
                sub=${words[i]}
            fi
            ;;
        esac
    done

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$globals" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local opts=""
    case $cmd in
    show | stop | start | restart | rm | config | send | logs | history | \
        effects | export)
        case $cmd in
        history) opts="--limit" ;;
        effects) opts="--state --limit" ;;
        logs) opts="-f --follow --lines --interval --duration" ;;
        export) opts="--all --out --json" ;;
        stop | start) opts="--request-id --prefix --all" ;;
        rm | config | send) opts="--request-id" ;;
        esac
        # stop and start take many names (a bulk request).
        if [[ $cur != -* && ( -z $sub || $cmd == stop || $cmd == start ) ]]; then
            COMPREPLY=($(compgen -W "$(_outlast_agents)" -- "$cur"))
            return
        fi
        ;;
    spawn) opts="--config --request-id --no-wait --prefix --count" ;;
    agents) opts="--all --status --kind --owner --prefix --after --limit" ;;
    top) opts="--interval --count --plain" ;;
    verify) opts="--db --agent --trust --cluster" ;;
    keygen) opts="--out --force" ;;
    recover) opts="--from --new-history --epoch-floor --node-id" ;;
    cluster)
        if [[ -z $sub ]]; then
            COMPREPLY=($(compgen -W "status init add remove" -- "$cur"))
            return
        fi
        case $sub in
        init) opts="--config --all" ;;
        add) opts="--labels" ;;
        esac
        ;;
    help)
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
        ;;
    esac
    COMPREPLY=($(compgen -W "$opts $globals" -- "$cur"))
}

complete -F _outlast outlast
