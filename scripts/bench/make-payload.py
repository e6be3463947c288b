"""Writes a realistic `issue_comment.created` delivery of about 15 KB
(pretty-printed like GitHub's documentation examples) to the path given."""
import json
import sys

API = "https://api.github.com"
WEB = "https://github.com"


def user(login, uid, kind="User"):
    base = f"{API}/users/{login}"
    return {
        "login": login, "id": uid, "node_id": f"MDQ6VXNlcj{uid}", "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4",
        "gravatar_id": "", "url": base, "html_url": f"{WEB}/{login}", "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}", "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs", "repos_url": f"{base}/repos", "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events", "type": kind, "user_view_type": "public", "site_admin": False,
    }


def repository(owner, name, rid):
    full = f"{owner['login']}/{name}"
    base = f"{API}/repos/{full}"
    repo = {"id": rid, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name, "full_name": full, "private": False,
            "owner": owner, "html_url": f"{WEB}/{full}", "description": "A service that does things", "fork": False, "url": base}
    for key, suffix in [("forks", "/forks"), ("keys", "/keys{/key_id}"), ("collaborators", "/collaborators{/collaborator}"),
                        ("teams", "/teams"), ("hooks", "/hooks"), ("issue_events", "/issues/events{/number}"),
                        ("events", "/events"), ("assignees", "/assignees{/user}"), ("branches", "/branches{/branch}"),
                        ("tags", "/tags"), ("blobs", "/git/blobs{/sha}"), ("git_tags", "/git/tags{/sha}"),
                        ("git_refs", "/git/refs{/sha}"), ("trees", "/git/trees{/sha}"), ("statuses", "/statuses/{sha}"),
                        ("languages", "/languages"), ("stargazers", "/stargazers"), ("contributors", "/contributors"),
                        ("subscribers", "/subscribers"), ("subscription", "/subscription"), ("commits", "/commits{/sha}"),
                        ("git_commits", "/git/commits{/sha}"), ("comments", "/comments{/number}"),
                        ("issue_comment", "/issues/comments{/number}"), ("contents", "/contents/{+path}"),
                        ("compare", "/compare/{base}...{head}"), ("merges", "/merges"), ("archive", "/{archive_format}{/ref}"),
                        ("downloads", "/downloads"), ("issues", "/issues{/number}"), ("pulls", "/pulls{/number}"),
                        ("milestones", "/milestones{/number}"), ("notifications", "/notifications{?since,all,participating}"),
                        ("labels", "/labels{/name}"), ("releases", "/releases{/id}"), ("deployments", "/deployments")]:
        repo[f"{key}_url"] = base + suffix
    repo.update({"created_at": "2019-05-15T15:19:25Z", "updated_at": "2019-05-15T15:21:03Z", "pushed_at": "2019-05-15T15:20:57Z",
                 "git_url": f"git://github.com/{full}.git", "ssh_url": f"git@github.com:{full}.git",
                 "clone_url": f"{WEB}/{full}.git", "svn_url": f"{WEB}/{full}", "homepage": None, "size": 0,
                 "stargazers_count": 0, "watchers_count": 0, "language": "Ruby", "has_issues": True, "has_projects": True,
                 "has_downloads": True, "has_wiki": True, "has_pages": True, "forks_count": 0, "mirror_url": None,
                 "archived": False, "disabled": False, "open_issues_count": 2, "license": None, "forks": 0,
                 "open_issues": 2, "watchers": 0, "default_branch": "master"})
    return repo


def main(path):
    author = user("Codertocat", 21031067)
    repo = repository(author, "Hello-World", 186853002)
    issue_url = f"{API}/repos/{repo['full_name']}/issues/1"
    label = {"id": 1362934389, "node_id": "MDU6TGFiZWwxMzYyOTM0Mzg5", "url": f"{API}/repos/{repo['full_name']}/labels/bug",
             "name": "bug", "color": "d73a4a", "default": True, "description": "Something isn't working"}
    issue = {"url": issue_url, "repository_url": repo["url"], "labels_url": issue_url + "/labels{/name}",
             "comments_url": issue_url + "/comments", "events_url": issue_url + "/events",
             "html_url": f"{WEB}/{repo['full_name']}/issues/1", "id": 444500041, "node_id": "MDU6SXNzdWU0NDQ1MDAwNDE=",
             "number": 1, "title": "Spelling error in the README file", "user": author, "labels": [label], "state": "open",
             "locked": False, "assignee": author, "assignees": [author], "milestone": None, "comments": 0,
             "created_at": "2019-05-15T15:20:18Z", "updated_at": "2019-05-15T15:20:21Z", "closed_at": None,
             "author_association": "OWNER", "body": "It looks like you accidently spelled 'commit' with two 't's."}
    comment = {"url": f"{API}/repos/{repo['full_name']}/issues/comments/492700400",
               "html_url": f"{WEB}/{repo['full_name']}/issues/1#issuecomment-492700400", "issue_url": issue_url,
               "id": 492700400, "node_id": "MDEyOklzc3VlQ29tbWVudDQ5MjcwMDQwMA==", "user": author,
               "created_at": "2019-05-15T15:20:21Z", "updated_at": "2019-05-15T15:20:21Z", "author_association": "OWNER",
               "body": "You are totally right! I'll get this fixed right away.",
               "reactions": {"url": f"{API}/repos/{repo['full_name']}/issues/comments/492700400/reactions",
                             "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0, "heart": 0,
                             "rocket": 0, "eyes": 0}}
    payload = {"action": "created", "issue": issue, "comment": comment, "repository": repo, "sender": author,
               "installation": {"id": 2311213, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMjMxMTIxMw=="}}
    with open(path, "w") as out:
        json.dump(payload, out, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
